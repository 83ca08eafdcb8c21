"""pytestlib.py: the tiny runner the Python test files share (stdlib only): @test registers a
function, run_tests() runs them in order, prints PASS / FAIL (with the traceback) / SKIP lines and
the closing "N passed, N failed, N skipped" that test/run_all.sh sums, and returns the exit status.
KVGPT_TEST_ONLY=SUBSTRING runs only the tests whose name contains it (while working on one)."""
import os
import traceback

TESTS = []
SKIPPED = []  # reasons, appended by tests that cannot run a part here


def test(fn):
    TESTS.append(fn)
    return fn


def run_tests(cleanup=None):
    passed = failed = 0
    only = os.environ.get("KVGPT_TEST_ONLY", "")
    for fn in TESTS:
        if only not in fn.__name__:
            continue
        try:
            fn()
            print(f"PASS {fn.__name__}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {fn.__name__}")
            traceback.print_exc()
            failed += 1
    for s in SKIPPED:
        print(f"SKIP {s}")
    if cleanup:
        cleanup()
    print(f"{passed} passed, {failed} failed, {len(SKIPPED)} skipped")
    return 1 if failed else 0
