#!/usr/bin/env bash
# Does processing keep up? `vexil serve` (profiling build) takes 500-event batches at a steady
# offered rate (CONNECTIONS connections, each pausing PACE_MS after every answer; by default 5
# and 20 ms, about 100,000 events/s) for DURATION, while the pipeline's lag is read from /metrics
# every second and reported in events and in milliseconds. Target: lag under 2 s at 100,000
# events/s. Environment as in serve.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

export PACE_MS="${PACE_MS:-20}"
connections="${CONNECTIONS:-5}"
connections="$connections" run "POST /v1/events, 500-event batches, ${PACE_MS} ms between batches per connection" \
    events-paced.lua > "$work/run.txt" &
watch_lag $!
report_machine
