#!/bin/sh
# make check: replays the fuzzing corpus (tests/fuzz/corpus) through the fuzz
# target, built without libFuzzer.
exec "${top_builddir:-.}/tests/fuzz/evexec_fuzz_replay" "${top_srcdir:-.}/tests/fuzz/corpus"
