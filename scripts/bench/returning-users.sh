#!/usr/bin/env bash
# Returning users drawn uniformly, against a saved state: the phase of scale-users.sh that does
# not keep up, on its own, so that builds can be compared in a few minutes each instead of
# loading 20 M users for every run. STATE is a directory. If it does not exist, USERS new users
# (default 20,000,000) are loaded as scale-users.sh loads them, the server is stopped and its
# data directory is kept in STATE/data. Otherwise the server starts from a fresh copy of
# STATE/data and is offered returning users drawn uniformly from the first half of STATE's users
# (5 connections pausing PACE_MS, default 20 ms, after each answer: about 110,000 events/s) for
# DURATION; it prints the events processed per second over the run and the largest lag. A state
# saved by one build can be served by another of the same storage format. Environment as in
# serve.sh.
set -euo pipefail
state="${STATE:?STATE=<directory>: where the loaded users are kept}"
[[ -d $state ]] && export SEED_DATA="$state/data"
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"
source "$(dirname "${BASH_SOURCE[0]}")/users.sh"

if [[ -z ${SEED_DATA:-} ]]; then
    users="${USERS:-20000000}"
    start_checkout
    load_halves "$users"
    kill "$server"
    wait "$server" || true
    mkdir -p "$state"
    mv "$work/data" "$state/data"
    echo "$users" > "$state/users"
    echo "== the state of $users users is kept in $state"
    exit
fi

half=$(($(cat "$state/users") / 2))
export PACE_MS="${PACE_MS:-20}"
processed_before="$(metric vexil_events_processed_total)"
started_ns="$(date +%s%N)"
offer_returning "$half"
awk -v a="$processed_before" -v b="$(metric vexil_events_processed_total)" -v s="$started_ns" -v e="$(date +%s%N)" \
    'BEGIN {printf "   processed events/s over the run: %.0f\n", (b - a) / ((e - s) / 1e9)}'
report_machine
