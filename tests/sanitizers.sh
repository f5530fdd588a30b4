#!/usr/bin/env bash
# Checker builds of evexec, for CI and for anyone who wants to reproduce one:
#
#   tests/sanitizers.sh [asan] [tsan] [valgrind] [fuzz]     (default: all four)
#
#   asan      ./configure CC=clang --enable-asan --enable-debug: the whole suite under
#             AddressSanitizer + UndefinedBehaviorSanitizer (leaks included).
#   tsan      ./configure CC=clang --enable-tsan --enable-debug: the whole suite under
#             ThreadSanitizer (suppressions: tests/tsan.supp), with the
#             hostile stress mode for 30 s (EVEXEC_TSAN_HOSTILE_SECONDS).
#   valgrind  a plain -O1 build; every Check program run with CK_FORK=no
#             under valgrind --leak-check=full --error-exitcode=1
#             --track-fds=yes, which must also report no fd left open.
#             (--child-silent-after-fork: check_hygiene's fork test child
#             exits leaving its parent's objects alone, as it must; it is
#             checked by its exit status and under the sanitizers.)
#   fuzz      ./configure CC=clang --enable-fuzz: the libFuzzer target for
#             EVEXEC_FUZZ_SECONDS (default 120), from tests/fuzz/corpus.
#
# check_alloc replaces malloc in its executable, which the sanitizers'
# runtimes and valgrind cannot share: --enable-asan/--enable-tsan leave it
# out of `make check`, and the valgrind step skips it. check_faults wraps
# the library's calls at link time instead (-Wl,--wrap) and runs in every
# variant. Every test runs at its default size everywhere (check_stress's
# million jobs, check_model's 3 seconds).
#
# Builds go to _ci/<variant> (EVEXEC_SAN_BUILDDIR to change), out of tree: the
# source tree must not be configured in place (run `make distclean` first).
# Installs what it needs with apt-get when run as root on Debian: clang,
# libclang-rt-14-dev (sanitizer and libFuzzer runtimes), valgrind.
set -euo pipefail
srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir=${EVEXEC_SAN_BUILDDIR:-$srcdir/_ci}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(asan tsan valgrind fuzz)
export DEBIAN_FRONTEND=noninteractive

need() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "sanitizers.sh: please install ${missing[*]}" >&2
        exit 1
    fi
}

[ -x "$srcdir/configure" ] || (cd "$srcdir" && autoreconf -fi)
if [ -f "$srcdir/config.status" ]; then
    echo "sanitizers.sh: $srcdir is configured in place; run 'make distclean' first" >&2
    exit 1
fi

summary=()
figures=()
note() { summary+=("$1"); echo "== $1"; }

# Sums "<prefix><number>" over the lines of the given logs.
sum_field() {
    local pattern=$1; shift
    sed -n "s/.*${pattern}\([0-9][0-9]*\).*/\1/p" "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'
}

collect_figures() {
    local name=$1 dir=$2
    local model stress faults
    model=$(sum_field 'jobs accepted ' "$dir"/tests/check_model.log)
    stress=$(sum_field 'million: accepted=' "$dir"/tests/check_stress.log)
    faults=$(sum_field 'faults injected: ' "$dir"/tests/check_faults.log)
    figures+=("$name: model jobs $model, stress jobs $stress, faults injected $faults")
}

configure_in() {
    local dir=$1; shift
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && "$srcdir/configure" -q "$@" >/dev/null)
}

run_asan() {
    need clang libclang-rt-14-dev
    local dir=$builddir/asan t0=$SECONDS
    configure_in "$dir" CC=clang --enable-asan --enable-debug --enable-werror
    make -C "$dir" -j2 >/dev/null
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        make -C "$dir" -j2 check || { cat "$dir"/test-suite.log; return 1; }
    collect_figures asan "$dir"
    note "asan+ubsan: suite clean ($((SECONDS - t0)) s)"
}

run_tsan() {
    need clang libclang-rt-14-dev
    local dir=$builddir/tsan t0=$SECONDS
    configure_in "$dir" CC=clang --enable-tsan --enable-debug --enable-werror
    make -C "$dir" -j2 >/dev/null
    # die_after_fork=0: check_hygiene forks a child that starts threads, on
    # purpose (fork safety); the child uses only objects it made itself.
    # EVEXEC_STRESS_HOSTILE_SECONDS: check_stress_features' hostile mode
    # (failing worker_init, large minimums, resize racing shutdown, ports
    # remade) runs longer here than in a plain make check, where it takes
    # 2 s: the thread-start races it looks for are likelier under TSan's
    # slower threads. EVEXEC_TSAN_HOSTILE_SECONDS changes it.
    EVEXEC_STRESS_HOSTILE_SECONDS=${EVEXEC_TSAN_HOSTILE_SECONDS:-30} \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0 suppressions=$srcdir/tests/tsan.supp" \
        make -C "$dir" -j2 check || { cat "$dir"/test-suite.log; return 1; }
    collect_figures tsan "$dir"
    note "tsan: suite clean ($((SECONDS - t0)) s)"
}

run_valgrind() {
    need valgrind
    local dir=$builddir/valgrind t0=$SECONDS failed=0
    configure_in "$dir" --enable-werror CFLAGS="-g -O1"
    make -C "$dir" -j2 >/dev/null
    make -C "$dir" -j2 check TESTS= >/dev/null # builds the test programs only
    local progs prog args
    progs=$(make -s -C "$dir" list-check-programs)
    for prog in $progs; do
        args=()
        case $prog in
        tests/check_alloc) continue ;; # replaces malloc: see above
        tests/fuzz/evexec_fuzz_replay) args=("$srcdir/tests/fuzz/corpus") ;;
        esac
        local log=$dir/$prog.valgrind.log
        # The environment make check gives tests (AM_TESTS_ENVIRONMENT).
        if ! (cd "$dir" && CK_FORK=no \
                top_srcdir="$srcdir" top_builddir=. MAKE=make CC="${CC:-cc}" \
                ./libtool --mode=execute valgrind -q --leak-check=full --error-exitcode=1 \
                --errors-for-leak-kinds=definite,indirect,possible --track-fds=yes \
                --child-silent-after-fork=yes \
                --log-file="$log" "$prog" "${args[@]}" >"$dir/$prog.log" 2>&1); then
            echo "valgrind: $prog failed"; cat "$dir/$prog.log" "$log"; failed=1; continue
        fi
        # --track-fds: an fd open at exit that was not inherited is a leak.
        if ! grep -q 'FILE DESCRIPTORS: [0-9]* open' "$log"; then
            echo "valgrind: $prog: no fd report from --track-fds"; failed=1; continue
        fi
        if awk '/Open (file descriptor|AF_)/ { open = 1; next }
                open && /inherited from parent/ { open = 0; next }
                open { leaked = 1; open = 0 }
                END { exit !leaked }' "$log"; then
            echo "valgrind: $prog left fds open"; cat "$log"; failed=1; continue
        fi
        echo "valgrind: $prog clean"
    done
    [ "$failed" -eq 0 ] || return 1
    collect_figures valgrind "$dir"
    note "valgrind: $(echo "$progs" | wc -w) programs but check_alloc clean, CK_FORK=no ($((SECONDS - t0)) s)"
}

run_fuzz() {
    need clang libclang-rt-14-dev
    local dir=$builddir/fuzz t0=$SECONDS out
    configure_in "$dir" CC=clang --enable-fuzz --enable-werror
    make -C "$dir" -j2 tests/fuzz/evexec_fuzz >/dev/null
    out=$("$srcdir/tests/fuzz/run.sh" "$dir/tests/fuzz/evexec_fuzz" "${EVEXEC_FUZZ_SECONDS:-120}")
    echo "$out"
    figures+=("$out")
    note "fuzz: clean ($((SECONDS - t0)) s)"
}

for step in "${steps[@]}"; do
    case $step in
    asan | tsan | valgrind | fuzz) "run_$step" ;;
    *) echo "sanitizers.sh: unknown step $step" >&2; exit 2 ;;
    esac
done
echo "== sanitizers.sh summary"
printf '  %s\n' "${summary[@]}" "${figures[@]}"
