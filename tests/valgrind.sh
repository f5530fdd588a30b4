# Sourced by the tests that run programs (tests/readme.sh, tests/examples.sh,
# tests/kv.sh): how they run them under valgrind. Needs $tmp, $top_builddir
# and say().
#
# valgrind_setup [libtool]: sets the array `run` to a valgrind command line
# (any error or leak of any kind fails with status 99; logs in $tmp/valgrind.PID)
# when valgrind is installed and this is not a sanitizer build; empty
# otherwise. With "libtool", through libtool's wrapper, so valgrind runs the
# real program and not the wrapper script.
valgrind_setup() {
    run=()
    case " ${CC:-cc} " in
    *-fsanitize=*) return 0 ;;
    esac
    if ! command -v valgrind >/dev/null 2>&1; then
        say "valgrind not found: running the programs without it"
        return 0
    fi
    [ "${1:-}" != libtool ] || run=("$top_builddir/libtool" --mode=execute)
    run+=(valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all
          --error-exitcode=99 --log-file="$tmp/valgrind.%p")
}

# valgrind_probe PROGRAM ARGS...: keeps valgrind only if it can read this
# build's debug information (Debian 12's valgrind cannot read the DWARF 5
# that clang writes by default, and gives up).
valgrind_probe() {
    [ ${#run[@]} -gt 0 ] || return 0
    local vlog
    vlog=$(mktemp)
    "${run[@]:0:$((${#run[@]} - 1))}" --log-file="$vlog" "$@" >/dev/null 2>&1 || true
    if grep -q "debuginfo reader\|can't recover" "$vlog"; then
        say "valgrind cannot read this build's debug information (clang's DWARF 5?): running without it"
        run=()
    fi
    rm -f "$vlog"
}
