#!/bin/sh
# Runs the libFuzzer target for a bounded time.
#
#   tests/fuzz/run.sh FUZZER [SECONDS]      (default 60 seconds)
#
# FUZZER is tests/fuzz/evexec_fuzz of a build configured with
# `./configure CC=clang --enable-fuzz`. The run starts from a scratch copy of
# tests/fuzz/corpus (the repository is never written) and prints how many
# inputs it executed. On a crash it exits non-zero and leaves the input in
# the scratch directory; replay it with tests/fuzz/evexec_fuzz_replay FILE
# (any build, e.g. under gdb or valgrind).
#
# To refresh the corpus kept in the repository with what a long run found:
#   mkdir new && FUZZER -merge=1 new tests/fuzz/corpus SCRATCH/corpus
#   and replace tests/fuzz/corpus with new (a minimal set with the same
#   coverage).
set -eu
fuzzer=${1:?usage: run.sh FUZZER [SECONDS]}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/evexec-fuzz.XXXXXX")
mkdir "$work/corpus"
cp "$here"/corpus/* "$work/corpus/"

set +e
"$fuzzer" -max_total_time="$seconds" -max_len=512 -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" >"$work/log" 2>&1
rc=$?
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
grown=$(find "$work/corpus" -type f | wc -l)
if [ "$rc" -ne 0 ]; then
    tail -n 40 "$work/log"
    echo "fuzz: FAILED after ${execs:-?} executions; inputs and log in $work" >&2
    exit 1
fi
echo "fuzz: ${execs:-0} executions in ${seconds} s, corpus $(find "$here/corpus" -type f | wc -l) -> $grown inputs, no failure"
rm -rf "$work"
