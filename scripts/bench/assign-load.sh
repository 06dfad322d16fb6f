#!/usr/bin/env bash
# HTTP load benchmark of sticky experiment assignment (`vexil serve`, profiling build) on
# loopback with wrk, over a running two-arm experiment:
#   1. new users: every request a first assignment, stored (target >= 20,000 req/s,
#      p99 <= 5 ms), flat out;
#   2. new users at about the target rate: 80 connections each waiting 2 ms after each answer
#      (wrk's closed loop has no fixed rate; the rate it reached is printed with the latency);
#   3. repeat users: 10,000 users already assigned, answered from the cache (target >= 50,000
#      req/s, p99 <= 2 ms).
# Results and their discussion: docs/benchmarks/assign.md. Environment as scripts/bench/serve.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

curl -sf "$url/v1/admin/experiments" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"key": "bench", "variants": [{"key": "control", "weight": 1}, {"key": "treatment", "weight": 1}]}' > /dev/null
curl -sf -X POST "$url/v1/admin/experiments/bench/start" -H "Authorization: Bearer $key" > /dev/null
# With ENVIRONMENTS > 1, every environment holds the 100 flags of the evaluation benchmark.
if [[ ${ENVIRONMENTS:-1} -gt 1 ]]; then import_rule_flags; fi

run "POST /v1/assign, a new user on every request" assign-new.lua
connections=80 PACE_MS=2 run "POST /v1/assign, a new user on every request, 2 ms between a connection's requests" \
    assign-new.lua
wrk -t1 -c8 -d3s -s "$root/scripts/bench/assign-repeat.lua" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" "$url" > /dev/null
run "POST /v1/assign, 10,000 assigned users" assign-repeat.lua
stored="$(sqlite3 "$work/data/vexil.db" 'SELECT count(*) FROM assignments' 2> /dev/null || echo '?')"
echo "== stored assignments: $stored"
report_machine
