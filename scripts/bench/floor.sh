#!/usr/bin/env bash
# vexil against its floor: the same wrk load as http-load.sh's evaluate run (100 flags with
# rules, scripts/bench/evaluate.lua) against `vexil serve` and against `vexil-floor`
# (crates/vexil-bench), a bare axum server on the same axum, tokio and allocator that parses the
# same body and answers a fixed result of the same shape, with no auth, metrics or tracking.
# Runs alternate (vexil, floor, vexil, floor, ...) so that drift of a shared machine falls on
# both; it prints each run's req/s and p99, the medians, and the ratio of the medians' req/s
# vexil/floor (target >= 0.85).
#
# Environment: ROUNDS (pairs of runs, default 3), and as scripts/bench/serve.sh: WORKERS (worker
# threads of both servers, default 2), THREADS/CONNECTIONS (wrk, default 1/32), DURATION
# (default 10s), BUILD_PROFILE (default profiling, as serve.sh). Both servers run throughout; only one is loaded at a
# time.
set -euo pipefail
rounds="${ROUNDS:-3}"
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

cargo build --quiet --profile "$profile" --manifest-path "$root/Cargo.toml" -p vexil-bench
start_server "$work/floor.log" "$root/target/$profile/vexil-floor" --listen 127.0.0.1:0 --workers "$workers"
floor_url=$started_url

import_rule_flags
warm_up evaluate.lua
warm_up evaluate.lua "$floor_url"

# measure NAME URL ROUND: one evaluate run against URL; prints its req/s and p99 and appends
# "NAME REQS P99_MS" to $work/results.
measure() {
    local name="$1" target="$2" round="$3"
    run "POST /v1/flags/{key}/evaluate against $name, round $round" evaluate.lua "$target" > "$work/run"
    awk -v name="$name" -v round="$round" '
        /Requests\/sec/ {reqs = $2}
        /^ +99%/ {p99 = $2; unit = p99; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", p99)
                  p99 *= (unit == "us" ? 0.001 : unit == "s" ? 1000 : 1)}
        /Non-2xx|Socket errors/ {sub(/^ +/, ""); problems = problems "; " $0}
        END {
            if (reqs == "" || p99 == "") {print "no figures in the wrk output of " name > "/dev/stderr"; exit 1}
            printf "%-5s round %d: %9.0f req/s, p99 %6.3f ms%s\n", name, round, reqs, p99, problems
            printf "%s %s %s\n", name, reqs, p99 >> "'"$work/results"'"
        }' "$work/run"
}

echo "== POST /v1/flags/{key}/evaluate, 100 flags with rules: wrk -t$threads -c$connections -d$duration" \
    "--latency; both servers with $workers workers; $rounds rounds"
for round in $(seq "$rounds"); do
    measure vexil "$url" "$round"
    measure floor "$floor_url" "$round"
done

# median NAME COLUMN: the median of a column (2: req/s, 3: p99 ms) of NAME's runs.
median() {
    awk -v name="$1" -v column="$2" '$1 == name {print $column}' "$work/results" | sort -g \
        | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}
vexil_reqs="$(median vexil 2)"
floor_reqs="$(median floor 2)"
printf '== median vexil: %.0f req/s, p99 %.3f ms\n' "$vexil_reqs" "$(median vexil 3)"
printf '== median floor: %.0f req/s, p99 %.3f ms\n' "$floor_reqs" "$(median floor 3)"
awk -v v="$vexil_reqs" -v f="$floor_reqs" \
    'BEGIN {printf "== ratio vexil/floor (median req/s): %.3f (target >= 0.85: %s)\n", v / f, (v / f >= 0.85) ? "met" : "not met"}'
report_machine
