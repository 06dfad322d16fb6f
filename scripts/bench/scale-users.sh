#!/usr/bin/env bash
# Scale benchmark of the event pipeline's per-user state: USERS users never seen before (default
# 20,000,000), sent in two halves, each user exposed to the experiment `checkout` and purchasing
# once (scripts/bench/events-users.lua: 500-event batches, 250 users each). After each half is
# processed it prints the server's RSS; then it offers about 100,000 events/s of further new
# users for DURATION (5 connections pausing PACE_MS, default 20 ms, after each answer) and
# prints the pipeline's lag, with that many users known; then the same offered rate of returning
# users for DURATION (each batch's users drawn at random from the first half's: their exposure is
# already recorded, their purchase joins this hour's unique users), first uniformly (the worst
# case for the cache in front of the store), then by Zipf's law as YCSB's core workloads draw
# their records (KNOWN_DRAW=zipf in events-users.lua: a few users return often, most rarely).
# Targets: RSS after 20 M users <= 512 MiB, RSS growth from 10 M to 20 M users <= 64 MiB, lag
# under 2 s at 100,000 events/s. Environment as in serve.sh; LOAD_CONNECTIONS (default 8) for
# the loading runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"
source "$(dirname "${BASH_SOURCE[0]}")/users.sh"

users="${USERS:-20000000}"
half=$((users / 2))
start_checkout
load_halves "$users"

export PACE_MS="${PACE_MS:-20}" FIRST_USER=2000000000 USERS_PER_THREAD=1000000000
connections="${CONNECTIONS:-5}" run "new users, 500-event batches, ${PACE_MS} ms between batches per connection" \
    events-users.lua > "$work/run.txt" &
watch_lag $!
echo "   RSS after the new users: $(rss_mib) MiB"
caught_up

offer_returning "$half"
caught_up

offer_returning "$half" zipf
echo "   RSS at the end: $(rss_mib) MiB"
report_machine
