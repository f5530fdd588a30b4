#!/bin/sh
# SPDX-License-Identifier: MIT
#
# examples/demo.sh: what evexec does for a daemon, measured. Run by
# 'make demo' (the end of README's first line):
#
#     sh examples/demo.sh [DAEMON [LOADGEN]]
#
# Twice -- first with --inline (blocking calls on the loop thread, the naive
# way), then with evexec -- it starts examples/offload-httpd on a free
# loopback port (--port 0: the kernel picks one) and drives it for
# DEMO_SECONDS seconds (default 10) with examples/loadgen:
#
#     2 connections asking /fast           (answered on the loop thread)
#     4 connections asking /hash           (SHA-512 crypt, ~20 ms of CPU)
#    12 connections asking /sleep?ms=50    (a 50 ms blocking "database call")
#
# then stops the daemon with SIGTERM (a graceful drain), checks it exited 0,
# and finally prints a table comparing /fast's throughput and latency, the
# blocking requests completed and the 503s of both runs. The daemon runs with
# 4 worker threads and a queue of 8, so 16 blocking clients overfill it:
# the 503s are its back-pressure. Everything this script starts, it stops.
set -eu

daemon=${1:-./examples/offload-httpd}
loadgen=${2:-./examples/loadgen}
seconds=${DEMO_SECONDS:-10}
threads=4
queue=8

me=demo
say() { printf '%s: %s\n' "$me" "$*"; }
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }

for f in "$daemon" "$loadgen"; do
    [ -x "$f" ] || die "$f not found or not executable (build first: make)"
done
case $seconds in
'' | *[!0-9]*) die "DEMO_SECONDS must be a number of seconds" ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-demo.XXXXXX") || die "mktemp failed"
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_mode LABEL [DAEMON OPTIONS...]
run_mode() {
    label=$1
    shift
    log=$tmp/$label.log
    "$daemon" --port 0 --threads "$threads" --queue "$queue" "$@" >"$log" 2>&1 &
    pid=$!
    # Wait (at most 10 s) for the line that gives the port.
    port=
    n=0
    while [ -z "$port" ]; do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the daemon exited at start"; }
        [ "$n" -lt 100 ] || die "the daemon did not say which port it listens on"
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/.*|\1|p' "$log")
        [ -n "$port" ] || sleep 0.1
        n=$((n + 1))
    done
    echo
    sed 's/^/  /' "$log"
    "$loadgen" --port "$port" --duration "$seconds" --label "$label" --results "$tmp/results" \
        2:/fast 4:/hash 12:/sleep?ms=50 || die "loadgen failed"
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    pid=
    sed -n '2,$s/^/  /p' "$log"
    [ "$rc" -eq 0 ] || die "the daemon exited with status $rc after SIGTERM (want 0)"
}

say "offload-httpd under load, $seconds s per mode, on $(nproc 2>/dev/null || echo '?') CPUs"
run_mode inline --inline
run_mode evexec

[ -s "$tmp/results" ] || die "no results"
echo
awk -v threads="$threads" -v queue="$queue" -v seconds="$seconds" '
    {
        delete f
        for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        m = f["label"]; p = f["path"]
        if (!(m in seen)) { seen[m] = 1; order[n++] = m }
        if (p == "/fast") { rps[m] = f["rps"]; p50[m] = f["p50_ms"]; p99[m] = f["p99_ms"] }
        else blocking[m] += f["ok"]
        s503[m] += f["s503"]
        errors[m] += f["errors"] + f["other"]
    }
    END {
        printf "%d s per mode; connections: 2 x /fast, 4 x /hash, 12 x /sleep?ms=50; " \
            "pool: %d threads, queue %d\n", seconds, threads, queue
        line = "+--------+--------------+--------------+--------------+----------------+-------+"
        print line
        printf "| %-6s | %12s | %12s | %12s | %14s | %5s |\n", "mode", "/fast req/s",
            "/fast p50 ms", "/fast p99 ms", "blocking done", "503s"
        print line
        for (i = 0; i < n; i++) {
            m = order[i]
            printf "| %-6s | %12.1f | %12.2f | %12.2f | %14d | %5d |\n", m, rps[m], p50[m],
                p99[m], blocking[m], s503[m]
        }
        print line
        a = "inline"; b = "evexec"
        if (!(a in seen) || !(b in seen)) exit 1
        if (errors[a] + errors[b] > 0)
            printf "(%d answers were neither 200 nor 503, or connections failed: see above)\n",
                errors[a] + errors[b]
        # One sentence, from the figures.
        if (rps[b] > rps[a] && p99[b] < p99[a] && p99[b] > 0) {
            printf "With evexec the loop thread stays free: /fast answered %.0f requests/s " \
                "instead of %.1f, with a p99 of %.2f ms instead of %.0f ms, while the " \
                "%d-thread pool completed %d blocking requests (%d inline, where they ran one " \
                "at a time on the loop)", rps[b], rps[a], p99[b], p99[a], threads, blocking[b],
                blocking[a]
            if (s503[b] > 0)
                printf " and turned %d away with an immediate 503 when its queue of %d was full", \
                    s503[b], queue
            print "."
        } else {
            printf "This run did not show evexec ahead: /fast %.0f req/s and p99 %.2f ms with " \
                "evexec vs %.0f req/s and %.2f ms inline (a loaded or throttled machine?).\n",
                rps[b], p99[b], rps[a], p99[a]
        }
    }' "$tmp/results" || die "could not summarise the results"
