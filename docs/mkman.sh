#!/bin/sh
# SPDX-License-Identifier: MIT
#
# docs/mkman.sh SRCDIR OUTDIR [DOXYGEN]: the section 3 man pages of the API,
# made by Doxygen from SRCDIR/include/evexec.h with SRCDIR/Doxyfile.
#
# Writes OUTDIR/man3/ and then OUTDIR/stamp (the build's target). Keeps:
#  - evexec.h.3, the whole header as one page (the manual, in order);
#  - one page per function, type and macro, named after it: Doxygen writes
#    a link (".so man3/evexec.h.3") for each function and macro, and a page
#    of its own for each struct. Where a struct and a function share a name
#    (evexec_pool_stats, evexec_port_stats, evexec_pool_histograms), the
#    function's documentation is appended to the struct's page, so that
#    'man evexec_pool_stats' shows both.
# Drops the links Doxygen makes for struct fields (size.3, name.3, ...):
# such names belong to nobody and would clash with other packages.
# Warnings are not errors here (a newer Doxygen must not break a build);
# CI runs 'doxygen' on the committed Doxyfile, where they are.
set -eu

srcdir=${1:?usage: mkman.sh SRCDIR OUTDIR [DOXYGEN]}
outdir=${2:?usage: mkman.sh SRCDIR OUTDIR [DOXYGEN]}
doxygen=${3:-doxygen}
header=$srcdir/include/evexec.h

tmp=$outdir/.tmp
rm -rf "$tmp" "$outdir/man3" "$outdir/stamp"
mkdir -p "$tmp"
{
    cat "$srcdir/Doxyfile"
    awk '/^#define EVEXEC_VERSION_(MAJOR|MINOR|PATCH) / { v = v s $3; s = "." }
         END { print "PROJECT_NUMBER = " v }' "$header"
    echo "INPUT = $header"
    echo "OUTPUT_DIRECTORY = $tmp"
    echo "GENERATE_HTML = NO"
    echo "GENERATE_MAN = YES"
    echo "MAN_OUTPUT = man"
    echo "WARN_AS_ERROR = NO"
    echo "QUIET = YES"
} | "$doxygen" - >"$tmp/doxygen.log" 2>&1 || {
    cat "$tmp/doxygen.log" >&2
    echo "mkman.sh: $doxygen failed" >&2
    exit 1
}
gen=$tmp/man/man3
[ -f "$gen/evexec.h.3" ] || { echo "mkman.sh: $doxygen wrote no evexec.h.3" >&2; exit 1; }

# A text line that starts with ' or . would be read as a request by groff:
# escape it (Doxygen's own requests start with a dot and are left alone).
for page in "$gen"/*.3; do
    sed "s/^'/\\\\\&'/" "$page" >"$page.new" && mv "$page.new" "$page"
done

mkdir -p "$outdir/man3"
cp "$gen/evexec.h.3" "$outdir/man3/"
for page in "$gen"/evexec_*.3 "$gen"/EVEXEC_*.3; do
    name=${page##*/}
    name=${name%.3}
    if ! head -n 1 "$page" | grep -q '^\.so ' &&
        grep -q "^EVEXEC_EXPORT .*[ *]$name(" "$header"; then
        # A struct's page under a function's name: add the function.
        cp "$page" "$outdir/man3/$name.3"
        {
            echo '.SH "Function"'
            awk -v fn="$name" '
                /^\.S[SH] / {
                    if (on) exit
                    if ($0 ~ /^\.SS / && (index($0, " " fn " (") || index($0, "\\fB" fn "\\fP ("))) on = 1
                }
                on' "$gen/evexec.h.3"
        } >>"$outdir/man3/$name.3"
        grep -q "^\.SS .*$name\(\\\\fP\)\{0,1\} (" "$outdir/man3/$name.3" || {
            echo "mkman.sh: no documentation of $name() found in evexec.h.3" >&2
            exit 1
        }
    else
        cp "$page" "$outdir/man3/$name.3"
    fi
done
rm -rf "$tmp"
touch "$outdir/stamp"
