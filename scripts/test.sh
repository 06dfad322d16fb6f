#!/usr/bin/env bash
# The whole test suite: the README's test command. Installs what the tests need first, runs every
# test, and ends with one total line ("N passed, N failed") over all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

log="$(mktemp)"
# The engines of the distributed mode, as throwaway loopback instances (scripts/services/); each
# start prints the variables the tests read. Under CI=true an engine that cannot start fails the run,
# so CI never passes without its tests; elsewhere its tests are skipped with a note.
stops=()
cleanup() {
    for stop in "${stops[@]}"; do bash scripts/services/"$stop".sh stop || true; done
    rm -f "$log"
}
trap cleanup EXIT
for engine in postgres broker s3; do
    if env="$(bash scripts/services/"$engine".sh start)"; then
        eval "$env"
        stops+=("$engine")
    elif [[ "${CI:-}" == true ]]; then
        echo "test.sh: $engine is required (CI=true) and did not start" >&2
        exit 1
    else
        echo "test.sh: $engine did not start; the tests that need it are skipped" >&2
    fi
done

# pyarrow, which the Parquet archive test reads the archive with; the same rule as for the engines.
if env="$(bash scripts/pyarrow.sh)"; then
    eval "$env"
elif [[ "${CI:-}" == true ]]; then
    echo "test.sh: pyarrow is required (CI=true) and could not be installed" >&2
    exit 1
else
    echo "test.sh: pyarrow could not be installed; the Parquet archive test is skipped" >&2
fi

status=0
# The Rust suites: unit, property, golden, end-to-end over HTTP against real `vexil serve` processes.
cargo test --workspace 2>&1 | tee "$log" || status=$?
# An unmodified OpenFeature client (the published Python SDK and OFREP provider) against the service.
bash scripts/ofrep-test.sh 2>&1 | tee -a "$log" || status=$?

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | awk '{s += $2} END {print s + 0}')
ofrep_passed=$(grep -Eo '^ofrep: [0-9]+ passed' "$log" | awk '{s += $2} END {print s + 0}')
ofrep_failed=$(grep -Eo '^ofrep: [0-9]+ passed, [0-9]+ failed' "$log" | awk '{s += $4} END {print s + 0}')
echo "tests: $((passed + ofrep_passed)) passed, $((failed + ofrep_failed)) failed"
exit "$status"
