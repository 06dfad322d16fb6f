#!/usr/bin/env bash
# Event ingest benchmark of `vexil serve` (profiling build) on loopback with wrk: POST /v1/events
# with 500-event batches, each acknowledged only once durable (fsync'd group commit).
# Targets: >= 300,000 events/s acknowledged with a batch p99 <= 10 ms; processing keeps up
# (lag under 2 s) at 100,000 events/s.
#
# Runs the ingest at two concurrencies, then reports the pipeline's lag and processed count from
# /metrics. CONNECTIONS_LOW (default 4) gives the latency figure: a few producers, each with one
# batch in flight at a time, as SDK flushers and log shippers send; the target rate is 600
# batches/s, and more batches in flight on two cores only queue (docs/benchmarks/events.md has
# the curve). CONNECTIONS (default 32) gives the capacity figure. Environment as in serve.sh
# (WORKERS, THREADS, DURATION).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

low="${CONNECTIONS_LOW:-4}"
for c in "$low" "$connections"; do
    connections="$c" run "POST /v1/events, 500-event batches" events.lua | tee "$work/run.txt"
    # Only 2xx answers acknowledged their batch (events.lua counts them); wrk's Requests/sec counts
    # 429s and errors too.
    acknowledged_rate "$work/run.txt"
    echo "   ingested $(metric vexil_events_ingested_total), processed $(metric vexil_events_processed_total), lag $(metric vexil_events_lag_events) events / $(metric vexil_events_lag_seconds) s (whole seconds, rounded down)"
done
for _ in $(seq 120); do
    [[ "$(metric vexil_events_lag_events)" == "0" ]] && break
    sleep 1
done
if [[ "$(metric vexil_events_lag_events)" == "0" ]]; then
    echo "== caught up: processed $(metric vexil_events_processed_total) of $(metric vexil_events_ingested_total)"
else
    echo "== still behind after 120 s: processed $(metric vexil_events_processed_total) of $(metric vexil_events_ingested_total)"
fi
