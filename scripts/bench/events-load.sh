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
#
# RATE=N (events/s) adds a paced run once processing has caught up: CONNECTIONS connections
# offered N events/s in all on a fixed schedule (events-rate.lua, like wrk2's -R), which gives the
# batch latency at that rate; a closed loop of CONNECTIONS connections only measures how much
# queueing that many batches in flight cause at capacity (Little's law: 32 batches of 500 in flight
# at 200,000 events/s take 80 ms on average). It prints the offered and acknowledged rates, the
# latency percentiles, and the sends that found no connection free. PACED_ONLY=1 runs only the
# paced run: the flat-out runs before it leave 10-15 million events in a broker that keeps them in
# memory (tansu's memory store), which then stalls now and then.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

# wait_for_processing: waits up to 120 s for the pipeline's lag to reach 0 and says whether it did.
wait_for_processing() {
    for _ in $(seq 120); do
        [[ "$(metric vexil_events_lag_events)" == "0" ]] && break
        sleep 1
    done
    if [[ "$(metric vexil_events_lag_events)" == "0" ]]; then
        echo "== caught up: processed $(metric vexil_events_processed_total) of $(metric vexil_events_ingested_total)"
    else
        echo "== still behind after 120 s: processed $(metric vexil_events_processed_total) of $(metric vexil_events_ingested_total)"
    fi
}

# report_ingest: what the pipeline counted so far, after a run.
report_ingest() {
    echo "   ingested $(metric vexil_events_ingested_total), processed $(metric vexil_events_processed_total), lag $(metric vexil_events_lag_events) events / $(metric vexil_events_lag_seconds) s (whole seconds, rounded down)"
}

low="${CONNECTIONS_LOW:-4}"
if [[ -z ${PACED_ONLY:-} ]]; then
    for c in "$low" "$connections"; do
        connections="$c" run "POST /v1/events, 500-event batches" events.lua | tee "$work/run.txt"
        # Only 2xx answers acknowledged their batch (events.lua counts them); wrk's Requests/sec
        # counts 429s and errors too.
        acknowledged_rate "$work/run.txt"
        report_ingest
    done
    wait_for_processing
fi
if [[ -n ${RATE:-} ]]; then
    # events-rate.lua paces each wrk thread on its own schedule.
    RATE="$(awk -v rate="$RATE" -v threads="$threads" 'BEGIN {print rate / threads}')" \
        run "POST /v1/events, 500-event batches, $RATE events/s offered" events-rate.lua | tee "$work/run.txt"
    awk '/Requests\/sec/ {printf "   offered events/s (every answer): %.0f\n", $2 * 500}' "$work/run.txt"
    acknowledged_rate "$work/run.txt"
    report_ingest
    wait_for_processing
fi
