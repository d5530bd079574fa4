#!/bin/sh
# valgrind.sh BUILD - a memcheck run of the test binaries in BUILD/tests (built without
# sanitizers): any invalid access, use of an uninitialised value or definite leak fails the
# test it happens in. Left out: test_vmath (sweeps of every float, far too slow under
# valgrind), test_cli (its work happens in child processes of the recur command), and the
# timing-bound kill test of test_checkpoint; the allocation-failure test tries every 5th point.
set -eu
build=${1:-build/release}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
tests="test_core test_scopes test_session test_ops test_rnn test_grad test_train test_checkpoint test_events
       test_examples test_interop test_bad_input test_fuzz_regress test_alloc_fail"
export RECUR_TEST_SKIP=killed_saver RECUR_ALLOC_FAIL_STRIDE=5 RECUR_SRC_DIR="${RECUR_SRC_DIR:-$(pwd)}"
failed=0
for t in $tests; do
    if ! valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        --show-leak-kinds=definite "$build/tests/$t" >"$build/tests/$t.valgrind.log" 2>&1; then
        echo "valgrind: $t FAILED (see $build/tests/$t.valgrind.log)"
        grep -E "FAIL|==[0-9]+==" "$build/tests/$t.valgrind.log" | head -20
        failed=1
    else
        echo "valgrind: $(tail -n 1 "$build/tests/$t.valgrind.log")"
    fi
done
exit $failed
