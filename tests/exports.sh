#!/bin/sh
# SPDX-License-Identifier: MIT
#
# tests/exports.sh: the shared library's ABI is exactly what the header says.
#
# Checks, on $top_builddir/lib/.libs/libevexec.so:
#  1. every defined dynamic symbol (nm -D --defined-only) starts with evexec_;
#  2. every function declared with EVEXEC_EXPORT in
#     $top_srcdir/include/evexec.h is exported;
#  3. every exported symbol is declared with EVEXEC_EXPORT in that header.
#
# Run by 'make check' (AM_TESTS_ENVIRONMENT exports top_srcdir and
# top_builddir). Writes nothing outside its own mktemp -d scratch directory.
# Exit status: 0 pass, 1 fail, 77 skip (nm missing or unable to list dynamic
# symbols).

set -eu

me=exports.sh
LC_ALL=C
export LC_ALL

say() { printf '%s: %s\n' "$me" "$*"; }
fail() { printf '%s: FAIL: %s\n' "$me" "$*" >&2; exit 1; }
skip() { printf '%s: SKIP: %s\n' "$me" "$*"; exit 77; }

: "${top_srcdir:?top_srcdir is not set (run me through make check)}"
: "${top_builddir:?top_builddir is not set (run me through make check)}"

header=$top_srcdir/include/evexec.h
lib=$top_builddir/lib/.libs/libevexec.so

command -v nm >/dev/null 2>&1 || skip "nm not found in PATH"
[ -r "$header" ] || fail "cannot read the header $header"
[ -e "$lib" ] || fail "$lib not found (library not built, or built without shared libraries)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-exports.XXXXXX") || fail "mktemp -d failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

say "library: $lib"
say "header:  $header"

# --- what the library exports -------------------------------------------------
if ! nm -D --defined-only "$lib" >"$tmp/nm.out" 2>"$tmp/nm.err"; then
    if ! nm --help 2>&1 | grep -q -e '--defined-only'; then
        skip "this nm cannot list dynamic symbols (no --defined-only): $(head -n 1 "$tmp/nm.err")"
    fi
    cat "$tmp/nm.err" >&2
    fail "nm -D --defined-only $lib failed"
fi

# Lines are "ADDRESS TYPE NAME"; NAME may carry a symbol version (name@@VER).
awk 'NF >= 3 { n = $NF; sub(/@.*/, "", n); print n }
     NF > 0 && NF < 3 { print "?unparsed nm line: " $0 > "/dev/stderr"; bad = 1 }
     END { exit bad }' "$tmp/nm.out" >"$tmp/exported.raw" \
    || fail "could not parse the output of nm -D --defined-only"
sort -u "$tmp/exported.raw" >"$tmp/exported"
n_exported=$(wc -l <"$tmp/exported" | tr -d ' ')
[ "$n_exported" -gt 0 ] || fail "nm lists no defined dynamic symbol in $lib"
say "library exports $n_exported defined dynamic symbols"

# --- what the header declares -------------------------------------------------
# Strips comments and preprocessor directives (with their continuation lines),
# then, for each EVEXEC_EXPORT, takes the declaration up to ';' or '{' and
# finds the declared name: the first identifier followed by a '(' that opens a
# parameter list (not "(*", a declarator group; __attribute__((...)), asm(...)
# and upper-case macro calls are skipped). A declaration without a parameter
# list (a variable) yields its last identifier.
awk '
function skip_group(toks, n, i,   depth) {
    depth = 0
    for (; i <= n; i++) {
        if (toks[i] == "(") depth++
        else if (toks[i] == ")" && --depth == 0) return i
    }
    return n
}
function decl_name(decl,   toks, n, i, t, last) {
    n = 0
    while (decl != "") {
        if (match(decl, /^[ \t\n]+/)) { decl = substr(decl, RLENGTH + 1); continue }
        if (!match(decl, /^[A-Za-z_][A-Za-z0-9_]*/)) RLENGTH = 1
        toks[++n] = substr(decl, 1, RLENGTH)
        decl = substr(decl, RLENGTH + 1)
    }
    toks[n + 1] = ""; toks[n + 2] = ""
    last = ""
    for (i = 1; i <= n; i++) {
        t = toks[i]
        if (t ~ /^[A-Za-z_]/) {
            if (toks[i + 1] == "(") {
                if (t ~ /^(__attribute__|__attribute|__declspec|__asm__|__asm|asm|_Alignas|alignas)$/ ||
                    t ~ /^[A-Z_][A-Z0-9_]*$/) {
                    i = skip_group(toks, n, i + 1)
                    continue
                }
                if (toks[i + 2] != "*" && toks[i + 2] != "^") return t
            }
            if (t != "EVEXEC_EXPORT") last = t
        } else if (t == "=" || t == "[") {
            break
        }
    }
    return last
}
{ buf = buf $0 "\n" }
END {
    # 1. comments
    out = ""
    while (match(buf, /\/\*/)) {
        out = out substr(buf, 1, RSTART - 1) " "
        buf = substr(buf, RSTART + 2)
        if (!match(buf, /\*\//)) { buf = ""; break }
        # keep the line structure: a directive after a comment stays a directive
        c = substr(buf, 1, RSTART - 1); gsub(/[^\n]/, "", c); out = out c
        buf = substr(buf, RSTART + 2)
    }
    buf = out buf
    # 2. line comments and preprocessor directives
    n = split(buf, lines, "\n")
    code = ""; cont = 0
    for (i = 1; i <= n; i++) {
        l = lines[i]
        if (cont || l ~ /^[ \t]*#/) { cont = (l ~ /\\[ \t]*$/); continue }
        sub(/\/\/.*/, "", l)
        code = code " " l
    }
    # 3. every EVEXEC_EXPORT declaration
    count = 0
    while (match(code, /(^|[^A-Za-z0-9_])EVEXEC_EXPORT([^A-Za-z0-9_]|$)/)) {
        code = substr(code, RSTART + RLENGTH - 1)
        count++
        end = length(code) + 1
        if (match(code, /[;{]/)) end = RSTART
        name = decl_name(substr(code, 1, end - 1))
        if (name == "") {
            print "?cannot find the name declared in: " substr(code, 1, end - 1) > "/dev/stderr"
            bad = 1
        } else {
            print name
        }
        code = substr(code, end)
    }
    if (count == 0) { print "?no EVEXEC_EXPORT declaration found" > "/dev/stderr"; bad = 1 }
    exit bad
}' "$header" >"$tmp/declared.raw" || fail "could not parse the EVEXEC_EXPORT declarations of $header"
sort -u "$tmp/declared.raw" >"$tmp/declared"
n_declared=$(wc -l <"$tmp/declared" | tr -d ' ')
say "header declares $n_declared EVEXEC_EXPORT symbols"

# --- compare --------------------------------------------------------------------
status=0

grep -v '^evexec_' "$tmp/exported" >"$tmp/foreign" || :
if [ -s "$tmp/foreign" ]; then
    say "FAIL: exported symbols not starting with evexec_:"
    sed 's/^/    /' "$tmp/foreign"
    status=1
else
    say "ok: all $n_exported exported symbols start with evexec_"
fi

comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
if [ -s "$tmp/missing" ]; then
    say "FAIL: declared EVEXEC_EXPORT in evexec.h but not exported by the library:"
    sed 's/^/    /' "$tmp/missing"
    status=1
else
    say "ok: every EVEXEC_EXPORT declaration of evexec.h is exported"
fi

comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/extra"
if [ -s "$tmp/extra" ]; then
    say "FAIL: exported by the library but not declared EVEXEC_EXPORT in evexec.h:"
    sed 's/^/    /' "$tmp/extra"
    status=1
else
    say "ok: every exported symbol is declared EVEXEC_EXPORT in evexec.h"
fi

if [ "$status" -ne 0 ]; then
    say "FAIL"
    exit 1
fi
say "PASS: the library exports exactly the $n_declared symbols of evexec.h:"
sed 's/^/    /' "$tmp/exported"
exit 0
