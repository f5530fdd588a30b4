#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/manpages.sh: every function the library exports has a man page once
# installed, and the overview evexec(3) is installed too.
#
# In a mktemp -d scratch directory: 'make install-data DESTDIR=<scratch>'
# (headers, evexec.pc, documentation and man pages: no library needed);
# then for each 'T evexec_*' symbol of nm -D --defined-only
# lib/.libs/libevexec.so, checks that man3/<symbol>.3 is installed and, if
# it is a link (".so man3/X.3"), that X.3 is installed as well; with man(1)
# present, that 'man evexec_submit' with MANPATH set to the scratch
# directory shows evexec_submit's documentation; then 'make uninstall-data'
# removes every page again.
#
# Run by 'make check'. Exit status: 0 pass, 1 fail, 77 skip (no man pages
# of the functions: Doxygen was not found when building from a git
# checkout; or nm missing).
set -eu

me=manpages.sh
LC_ALL=C
export LC_ALL
say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$me" "$*"; exit 77; }

: "${top_srcdir:?top_srcdir is not set (run me through make check)}"
: "${top_builddir:?top_builddir is not set (run me through make check)}"
MAKE=${MAKE:-make}
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)
lib=$top_builddir/lib/.libs/libevexec.so

command -v nm >/dev/null 2>&1 || skip "nm not found in PATH"
[ -e "$lib" ] || fail "$lib not found (library not built, or built without shared libraries)"
if [ ! -f "$top_builddir/man/stamp" ] && [ ! -f "$top_srcdir/man/stamp" ]; then
    skip "no man pages of the functions were made (Doxygen not found: apt-get install doxygen, then make)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-manpages.XXXXXX") || fail "mktemp -d failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
destdir=$tmp/root
mkdir "$destdir"

"$MAKE" -s -C "$top_builddir" install-data DESTDIR="$destdir" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "make install-data failed"
}
overview=$(find "$destdir" -path '*/man3/evexec.3' -type f)
[ -n "$overview" ] || fail "evexec.3, the overview page, is not installed"
man3=${overview%/evexec.3}
say "man pages installed in ${man3#"$destdir"}"

nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^evexec_/ { n = $3; sub(/@.*/, "", n); print n }' |
    sort -u >"$tmp/symbols"
n=$(wc -l <"$tmp/symbols" | tr -d ' ')
[ "$n" -gt 0 ] || fail "nm lists no evexec_ function in $lib"

missing=0
while read -r sym; do
    page=$man3/$sym.3
    if [ ! -f "$page" ]; then
        say "missing: $sym.3"
        missing=$((missing + 1))
        continue
    fi
    target=$(sed -n '1s/^\.so  *//p' "$page")
    if [ -n "$target" ] && [ ! -f "${man3%/man3}/$target" ]; then
        say "missing: $target, which $sym.3 includes"
        missing=$((missing + 1))
    fi
done <"$tmp/symbols"
[ "$missing" -eq 0 ] || fail "$missing of the $n exported functions have no man page"
say "ok: each of the $n exported functions has a man page"

if command -v man >/dev/null 2>&1; then
    MANPATH=${man3%/man3} man -P cat evexec_submit >"$tmp/man.out" 2>"$tmp/man.err" || {
        cat "$tmp/man.err" >&2
        fail "MANPATH=${man3%/man3} man evexec_submit failed"
    }
    grep -q 'evexec_submit (' "$tmp/man.out" || fail "man evexec_submit does not show evexec_submit()"
    grep -q 'Thread: the port' "$tmp/man.out" || fail "man evexec_submit lacks its Thread: line"
    say "ok: MANPATH=<prefix>/share/man man evexec_submit shows its documentation"
else
    say "(man(1) not installed: pages checked as files only)"
fi

"$MAKE" -s -C "$top_builddir" uninstall DESTDIR="$destdir" >"$tmp/uninstall.log" 2>&1 || {
    cat "$tmp/uninstall.log" >&2
    fail "make uninstall failed"
}
# Files and links only: the prefix's directories stay, and one may end in
# .3 too (a distcheck of version x.y.3 installs under .../evexec-x.y.3/).
left=$(find "$destdir" \( -type f -o -type l \) -name '*.3' | head -n 5)
[ -z "$left" ] || fail "make uninstall left man pages behind: $left"
say "PASS"
