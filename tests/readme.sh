#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tests/readme.sh: every ```c block of README.md compiles as written, and the
# complete ones (those with a main()) run.
#
#  1. Extracts each ```c block to block-<n>.c in a scratch directory.
#  2. Compiles each with $CC -Wall -Wextra -Werror against the source tree's
#     include/ and the just-built lib/.libs/libevexec.so: a block with a
#     main() is compiled and linked, any other is compiled only (-c).
#  3. Runs each complete block, under valgrind when valgrind is installed
#     (--leak-check=full, every leak kind an error, and "All heap blocks
#     were freed"), except in sanitizer builds, which check themselves:
#      - with README.md and configure.ac as arguments: one output line per
#        file, exit 0;
#      - if it handles SIGTERM (the quick-start), a signal while a job is
#        in flight: the first file is a FIFO whose writer the script holds
#        open, so the job reading it cannot finish; once the program says it
#        started, the script sends SIGTERM, waits for "stopping", then
#        writes to the FIFO and closes it. Every file must get exactly one
#        line (read, stopped, or not read), and the exit status must be 0.
#
# Run by 'make check' (AM_TESTS_ENVIRONMENT exports top_srcdir, top_builddir,
# CC, LIBEVENT_CFLAGS and LIBEVENT_LIBS). Exit status: 0 pass, 1 fail.

set -eu
me=readme.sh
LC_ALL=C
export LC_ALL

say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
show() { [ ! -s "$1" ] || sed 's/^/    | /' "$1" >&2; }

: "${top_srcdir:?top_srcdir is not set (run me through make check)}"
: "${top_builddir:?top_builddir is not set (run me through make check)}"
CC=${CC:-cc}
LIBEVENT_CFLAGS=${LIBEVENT_CFLAGS:-}
LIBEVENT_LIBS=${LIBEVENT_LIBS:--levent_core}
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
libdir=$top_builddir/lib/.libs
[ -e "$libdir/libevexec.so" ] || fail "no $libdir/libevexec.so: run make first"

tmp=$(mktemp -d)
writer_open=
cleanup() {
    [ -z "$writer_open" ] || exec 3>&-
    [ -z "${pid:-}" ] || kill -9 "$pid" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

awk -v dir="$tmp" '
    /^```c[ \t]*$/ { n++; f = sprintf("%s/block-%d.c", dir, n); inblock = 1; next }
    /^```/ && inblock { inblock = 0; close(f); next }
    inblock { print > f }
' "$top_srcdir/README.md"
blocks=$(cd "$tmp" && ls block-*.c 2>/dev/null | sort -t- -k2 -n) || true
[ -n "$blocks" ] || fail "README.md has no \`\`\`c block"

. "$top_srcdir/tests/valgrind.sh"
valgrind_setup

# valgrind's verdict on one run: no error (exit status) and every block freed.
check_valgrind() {
    [ ${#run[@]} -gt 0 ] || return 0
    local log
    for log in "$tmp"/valgrind.*; do
        [ -e "$log" ] || continue
        if [ -s "$log" ]; then show "$log"; fail "$1: valgrind reported the above"; fi
        rm -f "$log"
    done
}

# One output line per file named, each naming it once.
check_lines() {
    local what=$1 out=$2; shift 2
    local f n
    [ "$(wc -l < "$out")" -eq $# ] || { show "$out"; fail "$what: $# files, $(wc -l < "$out") lines"; }
    for f in "$@"; do
        n=$(grep -cF -- "$f" "$out" || true)
        [ "$n" -eq 1 ] || { show "$out"; fail "$what: $f has $n lines"; }
    done
}

compiled=0 ran=0
for b in $blocks; do
    src=$tmp/$b name=${b%.c}
    if grep -q '^int main(' "$src"; then
        # shellcheck disable=SC2086
        $CC -Wall -Wextra -Werror -I"$top_srcdir/include" $LIBEVENT_CFLAGS -o "$tmp/$name" \
            "$src" -L"$libdir" -levexec $LIBEVENT_LIBS -Wl,-rpath,"$libdir" -lpthread \
            > "$tmp/cc.log" 2>&1 || { show "$tmp/cc.log"; fail "README $name does not build"; }
    else
        # shellcheck disable=SC2086
        $CC -Wall -Wextra -Werror -I"$top_srcdir/include" $LIBEVENT_CFLAGS -c -o "$tmp/$name.o" \
            "$src" > "$tmp/cc.log" 2>&1 || { show "$tmp/cc.log"; fail "README $name does not compile"; }
        say "$name compiles"
        compiled=$((compiled + 1))
        continue
    fi
    compiled=$((compiled + 1))
    valgrind_probe "$tmp/$name"

    # A plain run over two files.
    files=("$top_srcdir/README.md" "$top_srcdir/configure.ac")
    rc=0
    "${run[@]}" "$tmp/$name" "${files[@]}" > "$tmp/out" 2> "$tmp/err" || rc=$?
    [ "$rc" -eq 0 ] || { show "$tmp/err"; fail "$name ${files[*]}: exit status $rc"; }
    check_valgrind "$name"
    check_lines "$name" "$tmp/out" "${files[@]}"
    say "$name builds, reads ${#files[@]} files, exits 0$([ ${#run[@]} -eq 0 ] || echo ', valgrind-clean')"
    ran=$((ran + 1))

    grep -q 'SIGTERM' "$src" || continue

    # SIGTERM while a job is in flight: the FIFO's reader cannot finish
    # before this script writes to it, which it does only after the signal.
    fifo=$tmp/fifo
    rm -f "$fifo" && mkfifo "$fifo"
    exec 3<> "$fifo" # a writer, so the reader's open() does not block
    writer_open=1
    files=("$fifo" "$top_srcdir/README.md" "$top_srcdir/configure.ac")
    "${run[@]}" "$tmp/$name" "${files[@]}" > "$tmp/out" 2> "$tmp/err" 3>&- &
    pid=$!
    wait_for() { # wait_for PATTERN: the program printed it (30 s at most)
        local i
        for i in $(seq 300); do
            grep -q "$1" "$tmp/err" && return 0
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        show "$tmp/err"
        fail "$name: no \"$1\" from the program"
    }
    wait_for 'Ctrl-C stops'
    kill -TERM "$pid"
    wait_for 'stopping'
    printf 'data for the job in flight\n' >&3
    exec 3>&-
    writer_open=
    rc=0
    wait "$pid" || rc=$?
    pid=
    [ "$rc" -eq 0 ] || { show "$tmp/err"; show "$tmp/out"; fail "$name after SIGTERM: exit status $rc"; }
    check_valgrind "$name after SIGTERM"
    check_lines "$name after SIGTERM" "$tmp/out" "${files[@]}"
    grep -qE "^$fifo: (stopped|not read)" "$tmp/out" ||
        { show "$tmp/out"; fail "$name: the job in flight was not stopped by the signal"; }
    say "$name: SIGTERM with a job in flight: every callback ran ($(wc -l < "$tmp/out") files), exit 0"
    ran=$((ran + 1))
done
say "$compiled README blocks compiled, $ran runs passed"
