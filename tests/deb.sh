#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/deb.sh [TARBALL]: the Debian packages build, are lintian-clean, install,
# and serve a user.
#
#  1. unpacks the release tarball (default: the evexec-*.tar.gz of the
#     current directory, e.g. the one 'make distcheck' left; 'make dist'
#     makes one) in a mktemp -d directory, adds debian/ from the source tree
#     and runs 'dpkg-buildpackage -us -uc -b' (DEB_BUILD_OPTIONS=nocheck:
#     CI runs the suite elsewhere), with no Doxygen needed: the tarball
#     carries the man pages;
#  2. lintian on the built .debs: fails on any error or warning;
#  3. installs libevexec0 and libevexec-dev (apt-get install ./*.deb);
#  4. 'man evexec_submit' and 'man 3 evexec' show their pages;
#  5. builds tests/consumer.c with
#         cc $(pkg-config --cflags evexec) consumer.c $(pkg-config --libs evexec)
#     and runs it: it must print "consumer: ok";
#  6. removes the two packages again (also on failure).
#
# Needs root (apt-get, dpkg); installs its tools itself: dpkg-dev debhelper
# lintian fakeroot man-db pkgconf libevent-dev (and the package's
# Build-Depends). Run by .ci/run.
set -eu

me=deb.sh
say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }

srcdir=$(cd "$(dirname "$0")/.." && pwd)
tarball=${1:-}
if [ -z "$tarball" ]; then
    # shellcheck disable=SC2012 # plain names
    tarball=$(ls -t evexec-*.tar.gz 2>/dev/null | head -n 1)
fi
[ -n "$tarball" ] && [ -f "$tarball" ] || fail "no release tarball (run 'make dist' first, or give its path)"
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
[ "$(id -u)" -eq 0 ] || fail "needs root (apt-get, dpkg -i)"

export DEBIAN_FRONTEND=noninteractive
say "installing the packaging tools"
apt-get install -y -qq --no-install-recommends dpkg-dev debhelper lintian fakeroot man-db \
    pkgconf libevent-dev check libcrypt-dev gcc make autoconf automake libtool >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-deb.XXXXXX")
installed=
cleanup() {
    if [ -n "$installed" ]; then
        dpkg -r libevexec-dev libevexec0 >/dev/null 2>&1 || say "could not remove the packages"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. build -------------------------------------------------------------------
tar -xzf "$tarball" -C "$tmp"
top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'evexec-*')
[ -d "$top" ] || fail "$tarball holds no evexec-* directory"
version=${top##*/evexec-}
[ -f "$top/man/stamp" ] || fail "$tarball carries no man pages (man/stamp)"
cp -R "$srcdir/debian" "$top/"
ln -s "$tarball" "$tmp/evexec_$version.orig.tar.gz"
changelog_version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
[ "${changelog_version%-*}" = "$version" ] ||
    fail "debian/changelog is at $changelog_version, the tarball at $version"
say "building evexec $version: dpkg-buildpackage -us -uc -b"
(cd "$top" && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 || {
    tail -n 60 "$tmp/build.log" >&2
    fail "dpkg-buildpackage failed"
}
# New symbols are compatible (dpkg-gensymbols fails by itself on missing
# ones): say so, so that they get into debian/libevexec0.symbols.
if grep -q 'dpkg-gensymbols: warning' "$tmp/build.log"; then
    sed -n '/dpkg-gensymbols: warning/,/^[^-+ @]/p' "$tmp/build.log" | head -n 40
    say "note: add the symbols above to debian/libevexec0.symbols, with the version that adds them"
fi
debs=$(ls "$tmp"/libevexec0_*.deb "$tmp"/libevexec-dev_*.deb)
for d in $debs; do say "built ${d##*/}"; done

# --- 2. lintian -------------------------------------------------------------------
say "lintian (fails on errors and warnings)"
# shellcheck disable=SC2086 # one word per .deb
lintian --fail-on error,warning --display-info $debs || fail "lintian reports errors or warnings"
say "ok: lintian"

# --- 3. install -------------------------------------------------------------------
installed=yes
# shellcheck disable=SC2086
apt-get install -y -qq $debs >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "apt-get install of the .debs failed"
}
say "ok: installed $(dpkg-query -W -f '${Package} ${Version}, ' libevexec0 libevexec-dev)"
doc=/usr/share/doc/libevexec-dev
for f in README.md changelog examples/hello.c; do
    [ -e "$doc/$f" ] || [ -e "$doc/$f.gz" ] || fail "$doc/$f not installed"
done
say "ok: README.md, the upstream changelog and the examples are in $doc"

# --- 4. man pages -------------------------------------------------------------------
# A minimal image may tell dpkg not to install man pages (path-exclude in
# /etc/dpkg/dpkg.cfg.d/): then read them from the package itself.
if [ ! -e /usr/share/man/man3/evexec_submit.3.gz ]; then
    say "dpkg did not install the man pages (path-exclude?): reading them from the .deb"
    dpkg-deb -x "$tmp"/libevexec-dev_*.deb "$tmp/x"
    MANPATH=$tmp/x/usr/share/man
    export MANPATH
fi
man -P cat evexec_submit >"$tmp/man.out" 2>&1 || { cat "$tmp/man.out" >&2; fail "man evexec_submit"; }
grep -q 'evexec_submit (' "$tmp/man.out" || fail "man evexec_submit does not document evexec_submit()"
man -P cat 3 evexec >"$tmp/man.out" 2>&1 || { cat "$tmp/man.out" >&2; fail "man 3 evexec"; }
grep -q '^EVEXEC(3)' "$tmp/man.out" && grep -q 'Jobs and groups' "$tmp/man.out" || fail "man 3 evexec is not the overview"
say "ok: man evexec_submit and man 3 evexec"

# --- 5. a consumer ------------------------------------------------------------------
cflags=$(pkg-config --cflags evexec)
libs=$(pkg-config --libs evexec)
say "cc \$(pkg-config --cflags evexec) consumer.c \$(pkg-config --libs evexec): '$cflags' '$libs'"
# shellcheck disable=SC2086 # flags are split on purpose
cc -Wall -Wextra -Werror $cflags -o "$tmp/consumer" "$srcdir/tests/consumer.c" $libs ||
    fail "tests/consumer.c does not build against the installed packages"
out=$("$tmp/consumer") || fail "the consumer exited with status $?"
[ "$out" = "consumer: ok" ] || fail "the consumer printed '$out'"
ldd "$tmp/consumer" | grep -Eq 'libevexec\.so\.0 => (/usr)?/lib/' || fail "the consumer does not load the packaged library"
say "ok: the consumer builds with pkg-config, loads the packaged libevexec.so.0 and prints 'consumer: ok'"
say "PASS"
