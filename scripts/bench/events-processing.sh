#!/usr/bin/env bash
# Does processing keep up? `vexil serve` (profiling build) takes 500-event batches at a steady
# offered rate (CONNECTIONS connections, each pausing PACE_MS after every answer; by default 5
# and 20 ms, about 100,000 events/s) for DURATION, while the pipeline's lag is read from /metrics
# every second and reported in events and in milliseconds. Target: lag under 2 s at 100,000
# events/s. Environment as in serve.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# metrics NAME NAME: both values from one read of /metrics, so they belong to the same moment.
metrics() { curl -s "$url/metrics" | awk -v a="$1" -v b="$2" '$1 == a {x = $2} $1 == b {y = $2} END {print x, y}'; }
export VEXIL_BENCH_DIR="$root/scripts/bench" PACE_MS="${PACE_MS:-20}"
connections="${CONNECTIONS:-5}"
connections="$connections" run "POST /v1/events, 500-event batches, ${PACE_MS} ms between batches per connection" \
    events-paced.lua > "$work/run.txt" &
load=$!
# The server's vexil_events_lag_seconds is whole seconds rounded down ("0 s" for a backlog of
# 100,000 events), too coarse for a 2 s target. The lag in time is estimated instead from each
# sample's backlog and the rate events arrived at since the previous sample: at a steady offered
# rate, N events behind at R events/s is N / R seconds behind (Little's law).
max_events=0 max_ms=0 samples=0 timed=0 prev_ingested="" prev_ns=""
while kill -0 "$load" 2> /dev/null; do
    sleep 1
    now_ns="$(date +%s%N)"
    read -r events ingested < <(metrics vexil_events_lag_events vexil_events_ingested_total) || true
    [[ -n "${events:-}" && -n "${ingested:-}" ]] || continue
    samples=$((samples + 1))
    ((events > max_events)) && max_events=$events
    if [[ -n "$prev_ingested" ]] && ((ingested > prev_ingested)); then
        ms=$((events * (now_ns - prev_ns) / (ingested - prev_ingested) / 1000000))
        timed=$((timed + 1))
        ((ms > max_ms)) && max_ms=$ms
    fi
    prev_ingested=$ingested prev_ns=$now_ns
done
wait "$load"
cat "$work/run.txt"
awk '/Requests\/sec/ {printf "   offered events/s (every answer): %.0f\n", $2 * 500}' "$work/run.txt"
acknowledged_rate "$work/run.txt"
echo "== lag over $samples one-second samples: at most $max_events events; at most $max_ms ms (backlog / ingest rate, over the $timed samples with ingest)"
echo "== ingested $(metric vexil_events_ingested_total), processed $(metric vexil_events_processed_total)"
report_machine
