#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tests/kv.sh sqlite|pg: examples/kv against a real database engine.
#
#   sqlite  a database file in a scratch directory.
#   pg      a throwaway PostgreSQL cluster: initdb and pg_ctl from
#           /usr/lib/postgresql/*/bin (Debian's postgresql package), run as
#           'nobody' when this script runs as root, listening only on a Unix
#           socket in a temporary directory; stopped and removed afterwards.
#           Without the server the test is skipped (exit 77), saying so,
#           unless CI is set: then it fails.
#
# Each run: the service (under valgrind when installed, not in sanitizer
# builds) with 2 workers and a queue of 1, then over HTTP (bash's /dev/tcp,
# no client needed): reads, writes, deletes, a bulk import and a bad one;
# a deadline (504 while the query still runs, the late result freed); a full
# queue (503, waited into deterministically through /stats); one connection
# per worker (PostgreSQL: pg_stat_activity); SIGTERM with a request in
# flight, which must still get its 200, and exit status 0, valgrind-clean.
#
# Run by 'make check' through tests/kv-sqlite.sh and tests/kv-pg.sh
# (AM_TESTS_ENVIRONMENT exports top_builddir and CC).
set -eu
engine=${1:?usage: kv.sh sqlite|pg}
me="kv.sh $engine"
LC_ALL=C
export LC_ALL

say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$me" "$*"; exit 77; }
show() { [ ! -s "$1" ] || sed 's/^/    | /' "$1" >&2; }

: "${top_builddir:?top_builddir is not set (run me through make check)}"
kv=$top_builddir/examples/kv

[ -x "$kv" ] || fail "no $kv: run make first"

tmp=$(mktemp -d)
pid= pgdir= pgbin= pgrun=()
cleanup() {
    [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true
    if [ -n "$pgdir" ]; then
        "${pgrun[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$pgdir"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

. "$top_srcdir/tests/valgrind.sh"
valgrind_setup libtool
valgrind_probe "$kv" --help
[ ${#run[@]} -eq 0 ] || say "the service runs under valgrind"

# http METHOD PATH [BODY]: sets $code and $body (one request, Connection: close).
http() {
    local method=$1 path=$2 data=${3-} resp
    exec 5<> "/dev/tcp/127.0.0.1/$port" || fail "cannot connect to port $port"
    printf '%s %s HTTP/1.1\r\nHost: kv\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' \
        "$method" "$path" "${#data}" "$data" >&5
    resp=$(cat <&5)
    exec 5>&-
    code=${resp#HTTP/1.1 }
    code=${code%% *}
    body=${resp#*$'\r\n\r\n'}
}

expect() { # expect CODE [BODY] METHOD PATH [DATA]
    local want=$1 want_body=$2; shift 2
    http "$@"
    [ "$code" = "$want" ] || fail "$1 $2: status $code, expected $want (body: $body)"
    # A BODY ending in a colon need only begin the body.
    [ -z "$want_body" ] || [ "$body" = "$want_body" ] ||
        { [ "${want_body%:}" != "$want_body" ] && [ "${body#"$want_body"}" != "$body" ]; } ||
        fail "$1 $2: body '$body', expected '$want_body'"
}

# stat NAME: a number from /stats.
stat() {
    http GET /stats
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<< "$body"
}

# wait_stat NAME VALUE: polls /stats until NAME is VALUE (60 s at most).
wait_stat() {
    local i
    for i in $(seq 600); do
        [ "$(stat "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "/stats never showed $1 = $2: $body"
}

start_kv() {
    : > "$tmp/out"
    "${run[@]}" "$kv" --port 0 --threads 2 --queue 1 --timeout-ms 20000 --seed 10 "$@" \
        > "$tmp/out" 2> "$tmp/err" &
    pid=$!
    local i
    for i in $(seq 600); do
        port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out")
        [ -z "$port" ] || return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    show "$tmp/err"
    fail "kv did not start"
}

stop_kv() {
    local rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    pid=
    [ "$rc" -eq 0 ] || { show "$tmp/err"; fail "kv exited with status $rc after SIGTERM"; }
    for log in "$tmp"/valgrind.*; do
        [ -e "$log" ] || continue
        if [ -s "$log" ]; then show "$log"; fail "valgrind reported the above"; fi
        rm -f "$log"
    done
}

# The checks, against a running service.
exercise() {
    expect 200 "value of k3" GET /kv/k3
    expect 404 "" GET /kv/nothing-here
    expect 204 "" PUT /kv/greeting "hello, world"
    expect 200 "hello, world" GET /kv/greeting
    expect 204 "" PUT /kv/greeting "hello again"
    expect 200 "hello again" GET /kv/greeting
    expect 204 "" DELETE /kv/greeting
    expect 404 "" DELETE /kv/greeting
    expect 404 "" GET /kv/greeting
    expect 200 "imported 3" POST /import $'a\t1\nb\t2\nc\t3\n'
    expect 200 "2" GET /kv/b
    expect 400 "" POST /import $'d\t4\nno tab here\n'
    expect 404 "" GET /kv/d # the bad import was rolled back whole
    expect 200 '{"keys":13,"bytes":' GET /report
    expect 404 "" GET /nowhere
    expect 400 "" GET '/kv/k1?delay_ms=x'
    say "reads, writes, deletes, imports: ok"

    # A deadline: 504 while the query still runs; its late result is freed
    # by cleanup (valgrind checks).
    expect 504 "deadline passed" GET '/kv/k1?delay_ms=60000&timeout_ms=100'
    [ "$(stat timed_out)" = 1 ] || fail "timed_out is not 1: $body"
    wait_stat running 0 # the stopped job has ended
    say "deadline: 504, timed_out 1"

    # A full queue: two jobs running (2 workers), one queued (queue 1),
    # then 503. /stats is answered by the loop, so it never queues.
    local bg=()
    for n in 1 2; do
        (http GET "/kv/k$n?delay_ms=1500" && echo "$code $body" > "$tmp/bg$n") &
        bg+=($!)
        wait_stat running "$n"
    done
    (http GET "/kv/k3?delay_ms=1500" && echo "$code $body" > "$tmp/bg3") &
    bg+=($!)
    wait_stat queued 1
    expect 503 "" GET /kv/k4
    wait "${bg[@]}"
    for n in 1 2 3; do
        [ "$(cat "$tmp/bg$n")" = "200 value of k$n" ] || fail "slow request $n: $(cat "$tmp/bg$n")"
    done
    [ "$(stat 503)" = 1 ] || fail "503 count is not 1: $body"
    [ "$(stat rejected)" = 1 ] || fail "rejected is not 1: $body"
    [ "$(stat threads)" = 2 ] || fail "threads is not 2: $body"
    [ "$(stat worker_init_failed)" = 0 ] || fail "a worker could not connect: $body"
    say "full queue: 503 at once, the queued request answered after"

    # A deadline that passes while the job is still queued: 504, and the
    # job never runs (its task is freed once the pool is idle).
    bg=()
    for n in 1 2; do
        (http GET "/kv/k$n?delay_ms=1500" && echo "$code $body" > "$tmp/bg$n") &
        bg+=($!)
        wait_stat running "$n"
    done
    expect 504 "deadline passed" GET '/kv/k3?timeout_ms=50'
    wait "${bg[@]}"
    [ "$(stat timed_out)" = 2 ] || fail "timed_out is not 2: $body"
    [ "$(stat cancelled)" = 1 ] || fail "cancelled is not 1: $body"
    say "deadline of a queued job: 504, never ran"
}

# SIGTERM while a request is in flight: it still gets its answer.
signal_in_flight() {
    (http GET "/kv/k5?delay_ms=1000" && echo "$code $body" > "$tmp/bg5") &
    local client=$!
    wait_stat running 1
    stop_kv
    wait "$client"
    [ "$(cat "$tmp/bg5")" = "200 value of k5" ] || fail "request in flight at SIGTERM: $(cat "$tmp/bg5")"
    grep -q 'stopping' "$tmp/err" || fail "no 'stopping' on stderr"
    say "SIGTERM with a request in flight: answered 200, exit 0$([ ${#run[@]} -eq 0 ] || echo ', valgrind-clean')"
}

case $engine in
sqlite)
    start_kv --db "$tmp/kv.db"
    exercise
    # Header bytes 18 and 19 (file format versions) are 2 in WAL mode.
    [ "$(od -An -tu1 -j18 -N2 "$tmp/kv.db" | tr -s ' ')" = " 2 2" ] ||
        fail "the database is not in WAL mode"
    say "the database is in WAL mode"
    signal_in_flight
    ;;
pg)
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
        [ -z "${CI:-}" ] || fail "CI is set but the PostgreSQL server is not installed (apt-get install postgresql)"
        skip "PostgreSQL server not installed (Debian: apt-get install postgresql): not tested against PostgreSQL"
    fi
    if ! "$kv" --help | grep -q -- '--pg'; then
        [ -z "${CI:-}" ] || fail "CI is set but kv was built without libpq (apt-get install libpq-dev)"
        skip "kv was built without libpq (Debian: libpq-dev): not tested against PostgreSQL"
    fi
    pgdir=$(mktemp -d /tmp/kv-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then # initdb refuses to run as root
        chown nobody "$pgdir"
        pgrun=(runuser -u nobody --)
    fi
    "${pgrun[@]}" "$pgbin/initdb" -D "$pgdir/data" -U kv --auth=trust -E UTF8 > "$tmp/initdb.log" 2>&1 ||
        { show "$tmp/initdb.log"; fail "initdb failed"; }
    "${pgrun[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
        -o "-k $pgdir -c listen_addresses= -c fsync=off" start > "$tmp/pg_ctl.log" 2>&1 ||
        { show "$tmp/pg_ctl.log"; show "$pgdir/log"; fail "pg_ctl start failed"; }
    say "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on $pgdir"
    conninfo="host=$pgdir dbname=postgres user=kv"
    start_kv --pg "$conninfo"
    exercise
    # One connection per worker (and none left by the setup connection).
    n=$("$pgbin/psql" -qtA -d "$conninfo" -c \
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
    [ "$n" = 2 ] || fail "$n connections, expected one per worker (2)"
    say "one connection per worker: $n"
    signal_in_flight
    # Each worker's PQfinish() told its backend to end; the server ends the
    # backend a moment later, on its own: give it up to 5 s.
    for _ in $(seq 50); do
        n=$("$pgbin/psql" -qtA -d "$conninfo" -c \
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        [ "$n" != 0 ] || break
        sleep 0.1
    done
    [ "$n" = 0 ] || fail "$n connections left 5 s after exit"
    say "every connection closed at exit"
    ;;
*) fail "unknown engine $engine" ;;
esac
