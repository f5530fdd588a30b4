#!/bin/sh
# SPDX-License-Identifier: MIT
#
# examples/kv-bench.sh: examples/kv under load, offloaded through evexec and
# with its queries on the loop thread (--inline), for README's table.
#
#     sh examples/kv-bench.sh [--pg CONNINFO] [SECONDS]      (default 10)
#
# SQLite (a database file in a scratch directory) unless --pg is given.
# The table is seeded with 100,000 keys, then, for each mode, the service
# (4 workers, queue 256) is driven by examples/loadgen for SECONDS with
#
#     8 connections asking GET /kv/k1     (a point read: priority HIGH)
#     1 connection  asking GET /report    (a full scan: priority LOW)
#
# and stopped with SIGTERM (it must exit 0). Prints requests/s and p99 of
# both streams per mode. Everything it starts, it stops.
set -eu

kv=./examples/kv
loadgen=./examples/loadgen
pg=
if [ "${1:-}" = --pg ]; then
    pg=$2
    shift 2
fi
seconds=${1:-10}
me=kv-bench
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }
for f in "$kv" "$loadgen"; do
    [ -x "$f" ] || die "$f not built (make; kv needs libsqlite3-dev)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kv-bench.XXXXXX")
pid=
cleanup() {
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT

if [ -n "$pg" ]; then
    set -- --pg "$pg"
    engine=PostgreSQL
else
    set -- --db "$tmp/kv.db"
    engine=SQLite
fi

# start_kv OPTIONS...: starts the service, sets $pid and $port.
start_kv() {
    : > "$tmp/out"
    "$kv" --port 0 --threads 4 --queue 256 "$@" > "$tmp/out" 2> "$tmp/err" &
    pid=$!
    i=0
    while ! port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/out") || [ -z "$port" ]; do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/err" >&2; die "kv did not start"; }
        i=$((i + 1))
        [ "$i" -lt 1200 ] || die "kv did not start in 120 s"
        sleep 0.1
    done
}

stop_kv() {
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    pid=
    [ "$rc" -eq 0 ] || { cat "$tmp/err" >&2; die "kv exited with status $rc"; }
}

printf '%s: seeding 100000 keys into %s\n' "$me" "$engine"
start_kv "$@" --seed 100000
stop_kv

for mode in inline evexec; do
    if [ "$mode" = inline ]; then start_kv "$@" --inline; else start_kv "$@"; fi
    "$loadgen" -p "$port" -d "$seconds" -l "$mode" -r "$tmp/results" \
        8:/kv/k1 1:/report > "$tmp/loadgen-$mode.log" 2>&1 || { cat "$tmp/loadgen-$mode.log" >&2; die "loadgen failed"; }
    stop_kv
done

field() { # field MODE PATH KEY
    sed -n "s|^label=$1 path=$2 .* $3=\([^ ]*\).*|\1|p" "$tmp/results"
}
printf '\n%s, %s s per mode; 8 connections GET /kv/k1, 1 connection GET /report (100,000 keys)\n' \
    "$engine" "$seconds"
printf '| mode | /kv/k1 req/s | /kv/k1 p99 ms | /report req/s | /report p99 ms |\n'
printf '|---|---|---|---|---|\n'
for mode in inline evexec; do
    printf '| %s | %s | %s | %s | %s |\n' "$mode" \
        "$(field $mode /kv/k1 rps)" "$(field $mode /kv/k1 p99_ms)" \
        "$(field $mode /report rps)" "$(field $mode /report p99_ms)"
done
