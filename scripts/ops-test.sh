#!/usr/bin/env bash
# The operations kit's checks (docs/operations.md): `promtool check rules` on every rules file,
# `promtool test rules` on every unit test file, and tests/ops/check_metrics.py, which runs a
# small load on a real `vexil serve` and checks every metric and label the rules and dashboards
# use against its /metrics. Installs Debian's `prometheus` package for promtool if it is
# missing (as root) and builds the binary first.
# Prints "ops: N passed, N failed"; exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
passed=0 failed=0

# Installs what is missing of promtool (Debian's `prometheus`) and PyYAML (`python3-yaml`).
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "ops-test.sh: install the Debian packages ${missing[*]} (or run this as root)" >&2
        echo "ops: 0 passed, 1 failed"
        exit 1
    fi
    echo "ops-test.sh: installing the Debian packages ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# check WHAT COMMAND...: runs one check and counts it.
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
    fi
}

for rules in "$root"/deploy/prometheus/*.rules.yml; do
    check "promtool check rules $(basename "$rules")" promtool check rules "$rules"
done
# Test files name their rule files relative to themselves.
test_rules() { (cd "$(dirname "$1")" && promtool test rules "$(basename "$1")"); }
for tests in "$root"/deploy/prometheus/tests/*.test.yml; do
    check "promtool test rules $(basename "$tests")" test_rules "$tests"
done
for dashboard in "$root"/deploy/grafana/*.json; do
    check "$(basename "$dashboard") is JSON with a title, a uid and panels" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["title"] and d["uid"] and d["panels"] and d["schemaVersion"] >= 36, sys.argv[1]
assert len({p["id"] for p in d["panels"]}) == len(d["panels"]), "panel ids repeat"' "$dashboard"
done

binary="$(bash "$root/scripts/test-binary.sh")"
log=$(mktemp)
status=0
python3 "$root/tests/ops/check_metrics.py" "$binary" "$root" | tee "$log" || status=$?
line=$(grep -E '^ops-metrics: [0-9]+ passed, [0-9]+ failed' "$log" || true)
rm -f "$log"
if [[ -n "$line" ]]; then
    read -r p f < <(awk '{print $2, $4}' <<<"$line")
    passed=$((passed + p))
    failed=$((failed + f))
fi
if [[ -z "$line" || ($status -ne 0 && ${f:-0} -eq 0) ]]; then
    echo "FAIL check_metrics.py ended (status $status) without its result line"
    failed=$((failed + 1))
fi

echo "ops: $passed passed, $failed failed"
((failed == 0))
