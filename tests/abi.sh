#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/abi.sh [--update] [LIBRARY]: the library's ABI against the baseline.
#
# Compares LIBRARY (default: lib/.libs/libevexec.so of the current
# directory, a built tree) with abi/libevexec.so.0.abi, the ABI that
# abidw recorded when the -version-info in abi/version-info was last
# released, using abidiff (libabigail; Debian: abigail-tools) with the
# suppressions of abi/suppressions.abignore (fields added at the end of a
# struct that carries its size are compatible).
#
#  - Functions or variables added: compatible; reported, passes. At the
#    release, -version-info follows rule 2 (Makefile.am), and the baseline
#    is regenerated.
#  - A function or variable removed, or changed (its signature, or a type it
#    reaches: a field removed, moved or retyped, a struct's size changed
#    otherwise than by appending to a sized struct): incompatible. Passes
#    only if configure.ac's -version-info says so against the baseline's:
#    CURRENT greater and AGE 0 (rule 3: a new soname).
#  - The soname of LIBRARY must be libevexec.so.(CURRENT-AGE).
#
# --update rewrites the baseline (abi/libevexec.so.0.abi, or the name of
# the new soname) and abi/version-info from LIBRARY and configure.ac: run it
# when a release is made, after setting -version-info, and commit the
# result:
#     ./configure && make && tests/abi.sh --update
#
# Run by .ci/run on a build with the default CFLAGS (-g -O2: abidw needs the
# debug information). Exit status: 0 pass, 1 fail.
set -eu

me=abi.sh
say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }

update=no
if [ "${1:-}" = --update ]; then
    update=yes
    shift
fi
srcdir=$(cd "$(dirname "$0")/.." && pwd)
lib=${1:-lib/.libs/libevexec.so}
[ -e "$lib" ] || fail "$lib not found (build the library first)"
for tool in abidw abidiff readelf; do
    command -v $tool >/dev/null 2>&1 || fail "$tool not found (Debian: apt-get install abigail-tools binutils)"
done

# -version-info of configure.ac (AC_SUBST([EVEXEC_LT_CURRENT], [N]), ...).
lt() {
    sed -n "s/^AC_SUBST(\[EVEXEC_LT_$1\], *\[\([0-9][0-9]*\)\]).*/\1/p" "$srcdir/configure.ac"
}
current=$(lt CURRENT)
revision=$(lt REVISION)
age=$(lt AGE)
[ -n "$current" ] && [ -n "$revision" ] && [ -n "$age" ] ||
    fail "cannot read EVEXEC_LT_CURRENT, _REVISION and _AGE from configure.ac"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libevexec.so.$((current - age))" ] ||
    fail "$lib has the soname '$soname'; -version-info $current:$revision:$age means libevexec.so.$((current - age))"
say "library: $lib ($soname), -version-info $current:$revision:$age"

abidir=$srcdir/abi
suppr=$abidir/suppressions.abignore
if [ "$update" = yes ]; then
    rm -f "$abidir"/libevexec.so.*.abi
    abidw --headers-dir "$srcdir/include" --no-corpus-path --drop-undefined-syms \
        --out-file "$abidir/$soname.abi" "$lib"
    echo "$current:$revision:$age" >"$abidir/version-info"
    say "wrote $abidir/$soname.abi and abi/version-info ($current:$revision:$age): commit them"
    exit 0
fi

base_info=$(cat "$abidir/version-info")
base_current=${base_info%%:*}
base_age=${base_info##*:}
baseline=$(ls "$abidir"/libevexec.so.*.abi)
[ -f "$baseline" ] || fail "no single baseline abi/libevexec.so.N.abi"
say "baseline: abi/${baseline##*/}, -version-info $base_info"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rc=0
abidiff --suppressions "$suppr" --headers-dir2 "$srcdir/include" \
    "$baseline" "$lib" >"$tmp/diff" 2>&1 || rc=$?
sed 's/^/    /' "$tmp/diff"
# abidiff's status is a bit mask: 1 error, 2 usage error, 4 ABI change,
# 8 incompatible ABI change.
[ $((rc & 3)) -eq 0 ] || fail "abidiff failed (status $rc)"

# "Functions changes summary: R Removed, C Changed (F filtered out), A Added ..."
count() { # $1 = Functions|Variables, $2 = Removed|Changed|Added
    n=$(sed -n "s/^$1 changes summary:.* \([0-9][0-9]*\) $2.*/\1/p" "$tmp/diff" | head -n 1)
    echo "${n:-0}"
}
# "Function symbols changes summary: R Removed, A Added function symbols ..."
symcount() {
    n=$(sed -n "s/^$1 symbols changes summary: \([0-9][0-9]*\) Removed.*/\1/p" "$tmp/diff" | head -n 1)
    echo "${n:-0}"
}
removed=$(($(count Functions Removed) + $(count Variables Removed) + $(symcount Function) + $(symcount Variable)))
changed=$(($(count Functions Changed) + $(count Variables Changed)))
added=$(($(count Functions Added) + $(count Variables Added)))
say "against the baseline: $removed removed, $changed changed, $added added"

if [ "$removed" -gt 0 ] || [ "$changed" -gt 0 ] || [ $((rc & 8)) -ne 0 ]; then
    if [ "$current" -gt "$base_current" ] && [ "$age" -eq 0 ]; then
        say "ok: incompatible change, and -version-info $current:$revision:$age gives a new soname (rule 3)"
        say "at the release, regenerate the baseline: tests/abi.sh --update"
        exit 0
    fi
    say "an interface was removed or changed incompatibly since the baseline"
    say "(-version-info $base_info): either keep it compatible (add a new function,"
    say "append fields to a sized struct), or set CURRENT=$((base_current + 1)), REVISION=0, AGE=0"
    say "in configure.ac (rule 3 beside -version-info in Makefile.am)"
    fail "incompatible ABI change not reflected by -version-info"
fi
if [ "$added" -gt 0 ]; then
    say "ok: $added added (compatible); at the release: rule 2 in Makefile.am unless nothing was"
    say "released since the baseline, then tests/abi.sh --update"
else
    say "ok: no change"
fi
[ "$base_current" -eq 0 ] && [ "$base_age" -eq 0 ] && [ "$current:$age" != "0:0" ] &&
    say "note: -version-info changed from the baseline's $base_info"
exit 0
