#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tests/examples.sh: the short examples run and say what they should, each
# under valgrind when it is installed (--leak-check=full, every leak kind
# an error: they free everything), not in sanitizer builds (which check
# themselves).
#
#   resolve    localhost and this machine's host name resolve, a bad name
#              fails, all without network; then with a 1 ms deadline, so
#              some lookups may time out: still one line per name, exit 0.
#   readfiles  three files and a missing one through the default pool,
#              resized to 2 threads: sizes and line counts as wc says,
#              exit 1 for the missing file.
#   gather     the prime count gathered from 8 jobs, the first of three
#              mirrors answering and the other two stopped, exit 0.
#   foreign    40 jobs submitted from a foreign thread, the sum right and
#              every callback on the loop thread, exit 0.
#
# Run by 'make check' (AM_TESTS_ENVIRONMENT exports top_srcdir, top_builddir
# and CC).
set -eu
me=examples.sh
LC_ALL=C
export LC_ALL

say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
show() { [ ! -s "$1" ] || sed 's/^/    | /' "$1" >&2; }

: "${top_srcdir:?top_srcdir is not set (run me through make check)}"
: "${top_builddir:?top_builddir is not set (run me through make check)}"
ex=$top_builddir/examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

. "$top_srcdir/tests/valgrind.sh"
valgrind_setup libtool
valgrind_probe "$ex/readfiles"
[ ${#run[@]} -eq 0 ] || say "the examples run under valgrind"

# run_ex STATUS PROGRAM ARGS...: runs it, output in $tmp/out, expecting STATUS.
run_ex() {
    local want=$1 prog=$2 rc=0 log
    shift 2
    "${run[@]}" "$ex/$prog" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || { show "$tmp/out"; show "$tmp/err"; fail "$prog $*: exit status $rc, expected $want"; }
    for log in "$tmp"/valgrind.*; do
        [ -e "$log" ] || continue
        if [ -s "$log" ]; then show "$log"; fail "$prog: valgrind reported the above"; fi
        rm -f "$log"
    done
}
has() { grep -qE -- "$1" "$tmp/out" || { show "$tmp/out"; fail "$2"; }; }

# resolve
host=$(hostname)
run_ex 0 resolve localhost "$host" bad..name.invalid
has '^localhost +[0-9a-f:.]+' "localhost did not resolve"
if getent ahosts "$host" >/dev/null 2>&1; then
    has "^$host +[0-9a-f:.]+" "the host name $host did not resolve"
else # not resolvable here: it must fail or time out, on its line
    has "^$host +(failed|timed out)" "the host name $host has no line"
    say "note: this machine's host name $host does not resolve (not in /etc/hosts)"
fi
has '^bad\.\.name\.invalid +failed: ' "bad..name.invalid did not fail"
has '^\(resolver\) ' "the HIGH job did not report"
[ "$(wc -l < "$tmp/out")" -eq 4 ] || { show "$tmp/out"; fail "resolve: not one line per name"; }
run_ex 0 resolve --timeout-ms 1 localhost "$host" bad..name.invalid
[ "$(wc -l < "$tmp/out")" -eq 4 ] || { show "$tmp/out"; fail "resolve, 1 ms: not one line per name"; }
say "resolve: localhost, $host, a failing name; with 1 ms deadlines: $(grep -c 'timed out' "$tmp/out" || true) timed out"

# readfiles
files=("$top_srcdir/README.md" "$top_srcdir/configure.ac" "$top_srcdir/examples/readfiles.c")
run_ex 1 readfiles --threads 2 "${files[@]}" "$tmp/missing"
for f in "${files[@]}"; do
    has "^$f: $(wc -c < "$f") bytes, $(wc -l < "$f") lines$" "readfiles: $f misread"
done
has "^$tmp/missing: No such file" "readfiles: the missing file was not reported"
has '^default pool: 2 threads at most' "readfiles: the default pool was not resized"
say "readfiles: ${#files[@]} files as wc counts them, the missing one reported, default pool resized"

# gather
run_ex 0 gather
has '^gathered 8 chunks: 17984 primes below 200000 \(status 0\)' "gather: wrong total"
has '^first answer: status 0' "gather: no first answer"
[ "$(grep -c '^mirror [0-9]: stopped' "$tmp/out")" -eq 2 ] || { show "$tmp/out"; fail "gather: two mirrors should be stopped"; }
has '^run times of the pool' "gather: no histogram"
say "gather: the total of 8 jobs, the first of 3 mirrors, 2 stopped"

# foreign
run_ex 0 foreign
has '^40 results from a foreign thread, sum of squares 22140 \(expected 22140\), 0 callbacks off' \
    "foreign: wrong sum or thread"
has "pool resized to 3 threads" "foreign: no resize"
has "^port: 40 callbacks run after [0-9]+ wake-ups" "foreign: no port counters"
say "foreign: 40 thread-safe submits, sum right, all callbacks on the loop"
