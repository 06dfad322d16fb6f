#!/usr/bin/env bash
# HTTP load benchmark of `vexil serve` (profiling build) on loopback with wrk:
#   1. POST /v1/flags/{key}/evaluate over a 100-flag set with rules (target >= 50,000 req/s,
#      p99 <= 2 ms);
#   2. OFREP bulk evaluation of the 100 flags (target >= 5,000 req/s);
# and the server's peak RSS under that load (target <= 100 MiB).
#
# Environment: WORKERS (server worker threads, default 2), THREADS/CONNECTIONS (wrk, default
# 1/32), DURATION (default 10s). wrk and the server share the machine; on 2 cores, two server
# workers beside one wrk thread measured best (see docs/benchmarks/http.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

# 100 flags, each with two rules (an all-of on country and plan, a numeric range) and a split.
{
    echo '{"flags": ['
    for i in $(seq 0 99); do
        [[ $i -gt 0 ]] && echo ','
        printf '{"key": "flag_%d", "enabled": true, "rules": [' "$i"
        printf '{"id": "us_pro", "when": {"all": [{"attr": "country", "op": "in", "values": ["US", "CA"]}, {"attr": "plan", "op": "eq", "value": "pro"}]}, "serve": {"variant": "on"}},'
        printf '{"id": "adults", "when": {"attr": "age", "op": "gte", "value": 18}, "serve": {"split": {"on": 1, "off": 1}, "rollout": 50}}],'
        printf '"default": {"split": {"on": 1}, "rollout": %d}}' "$((i % 100))"
    done
    echo ']}'
} > "$work/flags.json"
"$vexil" flags import "$work/flags.json" --server "$url" --key "$key" > /dev/null

wrk -t1 -c8 -d2s -s "$root/scripts/bench/evaluate.lua" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" "$url" > /dev/null
run "POST /v1/flags/{key}/evaluate, 100 flags with rules" evaluate.lua
run "OFREP bulk, 100 flags" ofrep-bulk.lua
report_machine
