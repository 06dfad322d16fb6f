#!/usr/bin/env bash
# Does processing keep up? `vexil serve` (release build) takes 500-event batches at a steady
# offered rate (CONNECTIONS connections, each pausing PACE_MS after every answer; by default 5
# and 20 ms, about 100,000 events/s) for DURATION, while the pipeline's lag is read from /metrics
# every second. Target: lag under 2 s at 100,000 events/s. Environment as in serve.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
export VEXIL_BENCH_DIR="$root/scripts/bench" PACE_MS="${PACE_MS:-20}"
connections="${CONNECTIONS:-5}"
connections="$connections" run "POST /v1/events, 500-event batches, ${PACE_MS} ms between batches per connection" \
    events-paced.lua > "$work/run.txt" &
load=$!
max_events=0 max_seconds=0 samples=0
while kill -0 "$load" 2> /dev/null; do
    sleep 1
    events="$(metric vexil_events_lag_events)" seconds="$(metric vexil_events_lag_seconds)"
    [[ -n "$events" && -n "$seconds" ]] || continue
    samples=$((samples + 1))
    ((events > max_events)) && max_events=$events
    ((seconds > max_seconds)) && max_seconds=$seconds
done
wait "$load"
cat "$work/run.txt"
awk '/Requests\/sec/ {printf "   offered and acknowledged events/s: %.0f\n", $2 * 500}' "$work/run.txt"
echo "== lag over $samples one-second samples: at most $max_events events, $max_seconds s"
echo "== ingested $(metric vexil_events_ingested_total), processed $(metric vexil_events_processed_total)"
report_machine
