#!/usr/bin/env bash
# The test script's own test, run by scripts/test.sh as part of the suite: points scripts/test.sh
# at a tiny cargo project written into a temporary folder (no dependencies, built offline into its
# own target folder) and breaks it on purpose, to show that a broken run exits non-zero and its
# closing line says so. Prints "selftest: N passed, N failed"; exits non-zero on any failure.
#
# The fixture's tests pass unless FIXTURE_BREAK says otherwise (read at run time, so the fixture
# is built once): "panic" fails one test, "abort" kills a test binary before its result line. Its
# engine (services/fixture.sh) fails to start under FIXTURE_ENGINE_FAIL=1, and its one test that
# needs the engine follows the suite's contract: skip (one line in VEXIL_TEST_SKIP_LOG) under
# VEXIL_TEST_ALLOW_SKIPS=1, else fail.
set -euo pipefail

# scripts/test.sh runs this script; the runs below must not run it again.
if [[ -n "${VEXIL_TEST_IN_SELFTEST:-}" ]]; then
    echo "test-selftest.sh: already inside a self-test run; not recursing" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

fixture="$tmp/fixture"
mkdir -p "$fixture/src" "$fixture/tests" "$tmp/services"
# Its own [workspace], so cargo never takes it for part of an enclosing one.
cat >"$fixture/Cargo.toml" <<'EOF'
[package]
name = "selftest-fixture"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]
EOF
cat >"$fixture/src/lib.rs" <<'EOF'
/// ```
/// assert_eq!(selftest_fixture::two(), 2);
/// ```
pub fn two() -> u32 {
    2
}

#[test]
fn unit() {
    assert_eq!(two(), 2);
}
EOF
cat >"$fixture/tests/a_panics.rs" <<'EOF'
#[test]
fn steady() {}

#[test]
fn breaks() {
    assert_ne!(std::env::var("FIXTURE_BREAK").as_deref(), Ok("panic"), "broken on purpose");
}
EOF
cat >"$fixture/tests/b_aborts.rs" <<'EOF'
#[test]
fn steady() {}

#[test]
fn aborts() {
    if std::env::var("FIXTURE_BREAK").as_deref() == Ok("abort") {
        std::process::abort();
    }
}
EOF
cat >"$fixture/tests/c_later.rs" <<'EOF'
#[test]
fn one() {}

#[test]
fn two() {}
EOF
cat >"$fixture/tests/d_engine.rs" <<'EOF'
use std::io::Write;

#[test]
fn needs_engine() {
    if std::env::var("VEXIL_FIXTURE_ENGINE").is_err() {
        assert_eq!(std::env::var("VEXIL_TEST_ALLOW_SKIPS").as_deref(), Ok("1"), "the engine is required");
        let log = std::env::var("VEXIL_TEST_SKIP_LOG").expect("VEXIL_TEST_SKIP_LOG");
        let mut file = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        writeln!(file, "d_engine::needs_engine: no engine").unwrap();
    }
}
EOF
cat >"$tmp/services/fixture.sh" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
case "$1" in
    start) [[ -z "${FIXTURE_ENGINE_FAIL:-}" ]] || { echo "fixture.sh: broken on purpose" >&2; exit 1; }
           echo "export VEXIL_FIXTURE_ENGINE=up" ;;
    stop) ;;
esac
EOF

passed=0 failed=0
# check NAME WANT_EXIT WANT_LINE [VAR=VALUE...]: runs scripts/test.sh against the fixture with
# the given environment; WANT_EXIT is "0" or "non-zero", WANT_LINE the exact closing line.
check() {
    local name=$1 want_exit=$2 want_line=$3 out="$tmp/run.log" status=0 line got_exit
    shift 3
    env -u VEXIL_TEST_ALLOW_SKIPS -u FIXTURE_BREAK -u FIXTURE_ENGINE_FAIL -u VEXIL_FIXTURE_ENGINE \
        VEXIL_TEST_IN_SELFTEST=1 VEXIL_TEST_MANIFEST="$fixture/Cargo.toml" \
        VEXIL_TEST_SERVICES="$tmp/services" VEXIL_TEST_ENGINES=fixture VEXIL_TEST_PARTS=cargo \
        CARGO_TARGET_DIR="$tmp/target" CARGO_NET_OFFLINE=true "$@" \
        bash "$root/scripts/test.sh" >"$out" 2>&1 || status=$?
    line=$(tail -n 1 "$out")
    got_exit=$([[ $status == 0 ]] && echo 0 || echo non-zero)
    if [[ "$got_exit" == "$want_exit" && "$line" == "$want_line" ]]; then
        echo "selftest: ok: $name: exit $status, \"$line\""
        passed=$((passed + 1))
    else
        echo "selftest: FAILED: $name: exit $status (want $want_exit), \"$line\" (want \"$want_line\")"
        # Prefixed, so that scripts/test.sh does not count the inner run's lines as its own.
        sed 's/^/selftest| /' "$out"
        failed=$((failed + 1))
    fi
}

# The fixture has 9 tests: 1 unit, 1 doc, 2 + 2 + 2 + 1 in tests/. (e) runs first and builds it.
check "(e) clean fixture" 0 "tests: 9 passed, 0 failed, 0 skipped"
check "(a) engine fails to start" non-zero "tests: 0 passed, 1 failed, 0 skipped" FIXTURE_ENGINE_FAIL=1
check "(b) a test panics" non-zero "tests: 8 passed, 1 failed, 0 skipped" FIXTURE_BREAK=panic
# b_aborts dies with no result line (its passing test is lost with it); c_later and d_engine
# after it still run and count.
check "(c) a test binary aborts" non-zero "tests: 7 passed, 1 failed, 0 skipped" FIXTURE_BREAK=abort
check "(d) engine missing, skips allowed" 0 "tests: 8 passed, 0 failed, 1 skipped" \
    FIXTURE_ENGINE_FAIL=1 VEXIL_TEST_ALLOW_SKIPS=1
# No engine started and skips not allowed: the test that needs it fails instead of skipping.
check "(f) engine absent, strict: its test fails" non-zero "tests: 8 passed, 1 failed, 0 skipped" \
    VEXIL_TEST_ENGINES=
echo "selftest: $passed passed, $failed failed"
((failed == 0))
