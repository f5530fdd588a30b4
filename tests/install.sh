#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/install.sh: 'make install' gives a user what they need, and
# 'make uninstall' takes it all back.
#
# In a mktemp -d scratch directory:
#  1. make install DESTDIR=<scratch>/root, with the prefix, libdir and
#     includedir read from the built evexec.pc (whatever --prefix was given,
#     distcheck's included);
#  2. checks that evexec.h (identical to the source), evexec.pc (identical to
#     the built one) and libevexec.so are installed, and that libevexec.so and
#     the versioned soname link (e.g. libevexec.so.0) lead to one real file;
#  3. with PKG_CONFIG_PATH=<installed pkgconfig dir> and
#     PKG_CONFIG_SYSROOT_DIR=<scratch>/root: checks that
#     'pkg-config --modversion evexec' is the version in evexec.h and that
#     --cflags/--libs point into the installation;
#  4. builds tests/consumer.c as a user would:
#         $CC $(pkg-config --cflags evexec) consumer.c $(pkg-config --libs evexec)
#     (with -Wall -Wextra -Werror), runs it with LD_LIBRARY_PATH=<installed
#     libdir> and checks that it printed "consumer: ok" and exited 0;
#  5. make uninstall DESTDIR=<scratch>/root and checks that only empty
#     directories are left.
#
# Run by 'make check' (AM_TESTS_ENVIRONMENT exports top_srcdir, top_builddir,
# MAKE and CC). Never writes into $top_srcdir; the only thing it adds to
# $top_builddir is what 'make install' itself builds (nothing, after 'make').
# Exit status: 0 pass, 1 fail, 77 skip (pkg-config missing).

set -eu

me=install.sh
LC_ALL=C
export LC_ALL

say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$me" "$*"; exit 77; }
# Prints a log file, indented, when a step failed.
show() { [ ! -s "$1" ] || sed 's/^/    | /' "$1" >&2; }

: "${top_srcdir:?top_srcdir is not set (run me through make check)}"
: "${top_builddir:?top_builddir is not set (run me through make check)}"
MAKE=${MAKE:-make}
CC=${CC:-cc}

command -v pkg-config >/dev/null 2>&1 || skip "pkg-config not found in PATH"

# Absolute paths: distcheck gives relative ones, and we cd nowhere but still
# want clear messages.
top_srcdir=$(cd "$top_srcdir" && pwd) || fail "no source dir $top_srcdir"
top_builddir=$(cd "$top_builddir" && pwd) || fail "no build dir $top_builddir"

src_header=$top_srcdir/include/evexec.h
consumer_c=$top_srcdir/tests/consumer.c
built_pc=$top_builddir/evexec.pc
for f in "$src_header" "$consumer_c" "$built_pc"; do
    [ -r "$f" ] || fail "cannot read $f"
done

# Scratch space. pkg-config output is split on blanks, so keep them out of it.
scratch_base=${TMPDIR:-/tmp}
case $scratch_base in
*' '* | *'	'*) scratch_base=/tmp ;;
esac
tmp=$(mktemp -d "$scratch_base/evexec-install.XXXXXX") || fail "mktemp -d failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
destdir=$tmp/root
work=$tmp/work
mkdir "$destdir" "$work"

# --- where things go: the built evexec.pc's variables ------------------------
# Expands ${var} references the way pkg-config does (variables are defined
# before use). Prints the value of variable $1, or fails if it is not defined.
pc_var() {
    awk -v want="$1" '
    /^[A-Za-z0-9_.]+[ \t]*=/ {
        name = $0; sub(/[ \t]*=.*/, "", name)
        val = $0; sub(/^[^=]*=[ \t]*/, "", val); sub(/[ \t\r]+$/, "", val)
        out = ""
        while (match(val, /\$\{[A-Za-z0-9_.]+\}/)) {
            out = out substr(val, 1, RSTART - 1) vars[substr(val, RSTART + 2, RLENGTH - 3)]
            val = substr(val, RSTART + RLENGTH)
        }
        vars[name] = out val
    }
    END { if (!(want in vars)) exit 1; print vars[want] }' "$built_pc"
}
prefix=$(pc_var prefix) || fail "no prefix variable in $built_pc"
libdir=$(pc_var libdir) || fail "no libdir variable in $built_pc"
includedir=$(pc_var includedir) || fail "no includedir variable in $built_pc"
for d in "$prefix" "$libdir" "$includedir"; do
    case $d in
    /*) ;;
    *) fail "$built_pc: '$d' is not an absolute directory" ;;
    esac
    case $d in
    *' '* | *'	'*) skip "configured directory '$d' contains blanks, which pkg-config output cannot carry" ;;
    esac
done
say "configured prefix=$prefix libdir=$libdir includedir=$includedir"

inst_inc=$destdir$includedir
inst_lib=$destdir$libdir
inst_pcdir=$inst_lib/pkgconfig

# --- 1. install ---------------------------------------------------------------
say "running: $MAKE -C $top_builddir install DESTDIR=$destdir"
if ! "$MAKE" -s -C "$top_builddir" install DESTDIR="$destdir" >"$work/install.log" 2>&1; then
    show "$work/install.log"
    fail "make install failed"
fi
say "installed files:"
(cd "$destdir" && find . ! -type d | sed 's|^\.|    |' | sort)

# --- 2. the files -------------------------------------------------------------
[ -f "$inst_inc/evexec.h" ] || fail "evexec.h not installed in $includedir"
cmp -s "$inst_inc/evexec.h" "$src_header" || fail "installed evexec.h differs from $src_header"
say "ok: $includedir/evexec.h installed, identical to the source"

[ -f "$inst_pcdir/evexec.pc" ] || fail "evexec.pc not installed in $libdir/pkgconfig"
cmp -s "$inst_pcdir/evexec.pc" "$built_pc" || fail "installed evexec.pc differs from $built_pc"
say "ok: $libdir/pkgconfig/evexec.pc installed"

so=$inst_lib/libevexec.so
[ -e "$so" ] || fail "libevexec.so not installed in $libdir (or a dangling link)"
[ -L "$so" ] || fail "$libdir/libevexec.so is not a symbolic link to the versioned library"

# The soname, from the library itself when a tool can tell, else the one
# libevexec.so.N link there is.
soname=
if command -v readelf >/dev/null 2>&1; then
    soname=$(readelf -d "$so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
elif command -v objdump >/dev/null 2>&1; then
    soname=$(objdump -p "$so" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
fi
if [ -z "$soname" ]; then
    soname=$(cd "$inst_lib" && for f in libevexec.so.*; do
        case $f in
        libevexec.so.*.*) ;;
        libevexec.so.[0-9]*) printf '%s\n' "$f" ;;
        esac
    done)
    [ -n "$soname" ] || fail "no libevexec.so.N soname link in $libdir"
    say "(no readelf/objdump: taking $soname as the soname)"
fi
case $soname in
libevexec.so.[0-9]*) ;;
*) fail "soname '$soname' is not a versioned libevexec.so.N" ;;
esac
[ -L "$inst_lib/$soname" ] || fail "soname link $libdir/$soname missing or not a symbolic link"
[ -f "$inst_lib/$soname" ] || fail "soname link $libdir/$soname is dangling"
# Same inode once the links are followed ('test -ef' is not POSIX).
# shellcheck disable=SC2012 # ls -i: the inode number only
inode() { ls -diL "$1" | awk '{ print $1 }'; }
[ "$(inode "$so")" = "$(inode "$inst_lib/$soname")" ] ||
    fail "libevexec.so and $soname lead to different files"
# shellcheck disable=SC2012 # only shown, and these names are plain
link_of() { ls -ld "$1" | sed 's/.* -> //'; }
say "ok: $libdir/libevexec.so -> $(link_of "$so"), soname link $soname -> $(link_of "$inst_lib/$soname")"

# --- 3. pkg-config ---------------------------------------------------------------
PKG_CONFIG_PATH=$inst_pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
PKG_CONFIG_SYSROOT_DIR=$destdir
# Keep -I/usr/include and -L/usr/lib (prefix=/usr): they are in the sysroot.
PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1
PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_ALLOW_SYSTEM_CFLAGS PKG_CONFIG_ALLOW_SYSTEM_LIBS

header_version=$(awk '/^#define EVEXEC_VERSION_(MAJOR|MINOR|PATCH)[ \t]/ { v = v s $3; s = "." }
                      END { print v }' "$inst_inc/evexec.h")
case $header_version in
*.*.*) ;;
*) fail "cannot read EVEXEC_VERSION_MAJOR/MINOR/PATCH from evexec.h (got '$header_version')" ;;
esac
pc_version=$(pkg-config --modversion evexec 2>"$work/pkg-config.err") || {
    show "$work/pkg-config.err"
    fail "pkg-config --modversion evexec failed"
}
[ "$pc_version" = "$header_version" ] ||
    fail "pkg-config --modversion evexec is '$pc_version', evexec.h says '$header_version'"
say "ok: pkg-config --modversion evexec = $pc_version = evexec.h's version"

cflags=$(pkg-config --cflags evexec 2>"$work/pkg-config.err") || {
    show "$work/pkg-config.err"
    fail "pkg-config --cflags evexec failed"
}
libs=$(pkg-config --libs evexec 2>"$work/pkg-config.err") || {
    show "$work/pkg-config.err"
    fail "pkg-config --libs evexec failed (is libevent_core.pc, which evexec.pc requires, findable?)"
}
say "pkg-config --cflags evexec: $cflags"
say "pkg-config --libs evexec:   $libs"
case " $cflags " in
*" -I$inst_inc "*) ;;
*) fail "pkg-config --cflags evexec lacks -I$inst_inc" ;;
esac
case " $libs " in
*" -L$inst_lib "*) ;;
*) fail "pkg-config --libs evexec lacks -L$inst_lib" ;;
esac
case " $libs " in
*" -levexec "*) ;;
*) fail "pkg-config --libs evexec lacks -levexec" ;;
esac
say "ok: --cflags and --libs point into the installation"

# The sysroot is also put in front of libevent_core's own directories, which
# are not in it: add them back as they really are (only -I and -L, so a
# missing "Requires: libevent_core" in evexec.pc still shows as a link error).
dep_flags=$(
    unset PKG_CONFIG_SYSROOT_DIR
    pkg-config --cflags --libs libevent_core 2>/dev/null |
        tr ' ' '\n' | grep -e '^-I' -e '^-L' | tr '\n' ' '
) || dep_flags=

# --- 4. build and run the consumer ------------------------------------------------
say "compiling: $CC -Wall -Wextra -Werror \$(pkg-config --cflags evexec) consumer.c \$(pkg-config --libs evexec)"
set -f # $CC, $cflags and $libs are word-split on purpose; no globbing
# shellcheck disable=SC2086
if ! $CC -Wall -Wextra -Werror $cflags -o "$work/consumer" "$consumer_c" $libs $dep_flags \
        >"$work/cc.log" 2>&1; then
    set +f
    show "$work/cc.log"
    fail "compiling tests/consumer.c against the installed evexec failed"
fi
set +f
show "$work/cc.log"
say "ok: consumer.c compiles and links against the installation"

LD_LIBRARY_PATH=$inst_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
if command -v ldd >/dev/null 2>&1; then
    found=$(ldd "$work/consumer" 2>/dev/null | awk '$1 ~ /^libevexec\.so/ { print $3 }')
    case $found in
    "$inst_lib"/*) say "ok: the consumer loads $found" ;;
    '') fail "ldd lists no libevexec.so among the consumer's libraries" ;;
    *) fail "the consumer would load libevexec from '$found', not from $inst_lib" ;;
    esac
fi
say "running the consumer with LD_LIBRARY_PATH=$inst_lib"
rc=0
"$work/consumer" >"$work/consumer.out" 2>"$work/consumer.err" || rc=$?
sed 's/^/    > /' "$work/consumer.out"
sed 's/^/    ! /' "$work/consumer.err"
[ "$rc" -eq 0 ] || fail "the consumer exited with status $rc"
[ "$(cat "$work/consumer.out")" = "consumer: ok" ] || fail "the consumer did not print exactly 'consumer: ok'"
[ ! -s "$work/consumer.err" ] || fail "the consumer wrote to stderr"
say "ok: the consumer ran, printed 'consumer: ok' and exited 0"

# --- 5. uninstall ----------------------------------------------------------------
say "running: $MAKE -C $top_builddir uninstall DESTDIR=$destdir"
if ! "$MAKE" -s -C "$top_builddir" uninstall DESTDIR="$destdir" >"$work/uninstall.log" 2>&1; then
    show "$work/uninstall.log"
    fail "make uninstall failed"
fi
(cd "$destdir" && find . ! -type d) >"$work/left"
if [ -s "$work/left" ]; then
    say "FAIL: make uninstall left these behind:"
    sed 's|^\.|    |' "$work/left"
    exit 1
fi
say "ok: make uninstall removed every file (only empty directories remain)"

say "PASS"
exit 0
