#!/usr/bin/env bash
# The whole test suite: the README's test command and what CI runs. Starts and installs what the
# tests need, runs every test, and ends with one closing line over all of them:
#
#   tests: N passed, N failed, N skipped
#
# It exits non-zero whenever that line counts a failure. A green run means every test ran and
# passed, so the run is strict by default:
#
# - Every engine (scripts/services/), pyarrow (scripts/pyarrow.sh) and Chromium with chromedriver
#   (scripts/chromium.sh, for the console's browser tests) must start or install; if one does
#   not, no test runs and each missing one counts as failed.
# - A test binary that dies without cargo's `test result:` line (abort, a signal, a stack
#   overflow) counts as failed, and so does a cargo, OFREP, Schemathesis or self-test run that
#   fails without saying how many tests failed (a build error, a crash). `--no-fail-fast`: one failing binary
#   does not hide the ones after it.
# - Tests skip only with VEXIL_TEST_ALLOW_SKIPS=1, for local partial runs: then an engine that
#   does not start is noted and the tests that need it skip instead of failing.
#
# What the tests get from this script (besides the engines' own variables):
#   VEXIL_TEST_ALLOW_SKIPS=1   exported only when skips are allowed; unset otherwise, so a test
#                              that lacks its engine must fail.
#   VEXIL_TEST_SKIP_LOG=FILE   an empty file; a test that skips appends its name to it (once
#                              or more: distinct lines are counted). Those tests reported "ok" to cargo, so they are
#                              taken out of the passed count and counted as skipped. Under the
#                              strict default a line there counts as a failure.
#
# Seams for scripts/test-selftest.sh, which points this script at a tiny broken cargo project to
# prove the above (they are not opt-outs: .ci/run unsets them):
#   VEXIL_TEST_MANIFEST   the Cargo.toml to test (default: this repository's workspace)
#   VEXIL_TEST_SERVICES   the folder of engine scripts (default: scripts/services)
#   VEXIL_TEST_ENGINES    the engines to start from it (default when unset: "postgres broker s3")
#   VEXIL_TEST_PARTS      what to run, in order (default when unset: "pyarrow chromium cargo ofrep
#                         schemathesis ops selftest"; "ofrep-web" adds the OpenFeature web provider
#                         check, which needs Node.js)
set -euo pipefail
cd "$(dirname "$0")/.."

manifest="${VEXIL_TEST_MANIFEST:-Cargo.toml}"
services="${VEXIL_TEST_SERVICES:-scripts/services}"
read -r -a engines <<<"${VEXIL_TEST_ENGINES-postgres broker s3}"
read -r -a parts <<<"${VEXIL_TEST_PARTS-pyarrow chromium cargo ofrep schemathesis ops selftest}"
has_part() { [[ " ${parts[*]} " == *" $1 "* ]]; }

# Only "1" allows skips; any other value is unset so the tests see the same strict decision.
if [[ "${VEXIL_TEST_ALLOW_SKIPS:-}" == 1 ]]; then
    export VEXIL_TEST_ALLOW_SKIPS=1
    allow_skips=1
else
    unset VEXIL_TEST_ALLOW_SKIPS
    allow_skips=0
fi

work="$(mktemp -d)"
export VEXIL_TEST_SKIP_LOG="$work/skipped"
: >"$VEXIL_TEST_SKIP_LOG"
stops=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    for stop in "${stops[@]}"; do bash "$services/$stop.sh" stop || true; done
    rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0 skipped=0
fail() { echo "test.sh: $*" >&2; failed=$((failed + 1)); }

# The closing line, and the exit status that goes with it.
finish() {
    echo "tests: $passed passed, $failed failed, $skipped skipped"
    ((failed == 0)) || exit 1
    exit 0
}

# count_line PART STATUS LOG: adds a script's own "PART: N passed, N failed" line. No such line,
# or a non-zero exit with no failure counted, means the script died: at least one failure.
count_line() {
    local part=$1 status=$2 log=$3 line p f
    line=$(grep -E "^$part: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1 || true)
    if [[ -z "$line" ]]; then
        fail "$part ended (status $status) without its '$part: N passed, N failed' line"
        return
    fi
    read -r p f < <(awk '{print $2, $4}' <<<"$line")
    passed=$((passed + p))
    failed=$((failed + f))
    if ((status != 0 && f == 0)); then
        fail "$part exited with status $status but counted no failure"
    fi
}

# The engines of the distributed mode, as throwaway loopback instances; each start prints the
# variables the tests read. Then pyarrow, which the Parquet archive test reads the archive with,
# and headless Chromium with chromedriver, which the console's browser tests drive.
missing=()
for engine in "${engines[@]}"; do
    if env="$(bash "$services/$engine.sh" start)"; then
        eval "$env"
        stops+=("$engine")
    else
        missing+=("$engine")
    fi
done
if has_part pyarrow; then
    if env="$(bash scripts/pyarrow.sh)"; then
        eval "$env"
    else
        missing+=(pyarrow)
    fi
fi
if has_part chromium; then
    if env="$(bash scripts/chromium.sh)"; then
        eval "$env"
    else
        missing+=(chromium)
    fi
fi
for what in "${missing[@]}"; do
    if ((allow_skips)); then
        echo "test.sh: $what did not start; the tests that need it skip (VEXIL_TEST_ALLOW_SKIPS=1)" >&2
    else
        fail "$what did not start and every test needs it (VEXIL_TEST_ALLOW_SKIPS=1 lets them skip)"
    fi
done
# Running the tests without an engine would only repeat this failure once per test.
((failed == 0)) || finish

for part in "${parts[@]}"; do
    log="$work/$part.log"
    status=0
    case "$part" in
    pyarrow | chromium) ;;
    cargo)
        # The Rust suites: unit, property, golden, end-to-end over HTTP against real `vexil
        # serve` processes.
        cargo test --workspace --no-fail-fast --manifest-path "$manifest" 2>&1 | tee "$log" || status=$?
        # Every binary cargo starts ("Running ...", "Doc-tests ...") must end with its result
        # line before the next one starts; one that does not died.
        read -r p f died < <(awk '
            function close_binary() {
                if (open) {
                    died++
                    print "test.sh: " name " ended without a result line (killed by a signal?)" > "/dev/stderr"
                }
                open = 0
            }
            /^ +(Running|Doc-tests) / { close_binary(); open = 1; name = $0; sub(/^ +/, "", name); next }
            /^test result: / {
                open = 0
                for (i = 4; i < NF; i++) {
                    if ($(i + 1) ~ /^passed;?$/) p += $i
                    if ($(i + 1) ~ /^failed;?$/) f += $i
                }
            }
            END { close_binary(); print p + 0, f + 0, died + 0 }' "$log")
        passed=$((passed + p))
        failed=$((failed + f + died))
        if ((status != 0 && f + died == 0)); then
            fail "cargo test exited with status $status but no test failed (a build error?)"
        fi
        # Skipped tests reported "ok" to cargo: they did not pass. A test that lacks several
        # engines writes its name once for each.
        skipped=$(sort -u "$VEXIL_TEST_SKIP_LOG" | wc -l)
        passed=$((passed - skipped))
        sort -u "$VEXIL_TEST_SKIP_LOG" | sed 's/^/test.sh: skipped: /' >&2
        if ((skipped > 0 && !allow_skips)); then
            echo "test.sh: $skipped tests skipped without VEXIL_TEST_ALLOW_SKIPS=1; they count as failed" >&2
            failed=$((failed + skipped))
            skipped=0
        fi
        ;;
    ofrep)
        # An unmodified OpenFeature client (the published Python SDK and OFREP provider) against
        # the service.
        bash scripts/ofrep-test.sh 2>&1 | tee "$log" || status=$?
        count_line ofrep "$status" "$log"
        ;;
    schemathesis)
        # Property-based requests for every operation of the service's own OpenAPI document,
        # with and without a key: no 5xx, every answer as documented.
        bash scripts/schemathesis-test.sh 2>&1 | tee "$log" || status=$?
        count_line schemathesis "$status" "$log"
        ;;
    ofrep-web)
        # Opt-in (not in the default parts: it needs Node.js and npm): the published OpenFeature
        # web SDK and OFREP web provider, live updates through the event stream included.
        bash scripts/ofrep-web-test.sh 2>&1 | tee "$log" || status=$?
        count_line ofrep-web "$status" "$log"
        ;;
    ops)
        # The operations kit: the Prometheus rules and their unit tests (promtool), and the
        # metrics every rule and dashboard uses against a real `vexil serve`.
        bash scripts/ops-test.sh 2>&1 | tee "$log" || status=$?
        count_line ops "$status" "$log"
        ;;
    selftest)
        # This script's own checks: a broken build must make it fail.
        bash scripts/test-selftest.sh 2>&1 | tee "$log" || status=$?
        count_line selftest "$status" "$log"
        ;;
    *)
        fail "unknown part '$part' in VEXIL_TEST_PARTS"
        ;;
    esac
done
finish
