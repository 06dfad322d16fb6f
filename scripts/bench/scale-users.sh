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

users="${USERS:-20000000}"
half=$((users / 2))
H=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")
curl -sf "$url/v1/admin/experiments" "${H[@]}" -d '{"key": "checkout",
    "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
    "metrics": [{"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"},
                {"key": "revenue", "kind": "sum", "event": "purchase"}]}' > /dev/null
curl -sf -X POST "$url/v1/admin/experiments/checkout/start" "${H[@]}" > /dev/null

# caught_up: waits until processing has caught up with everything ingested.
caught_up() { until [[ "$(metric vexil_events_lag_events)" == "0" ]]; do sleep 1; done; }

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status"; }

# send_users FIRST COUNT: COUNT new users from u<FIRST> as fast as the server takes them (a batch
# refused or timed out is not sent again: the acknowledged count says how many users were
# sent), then waits until processing has caught up. wrk runs until its duration even after its
# threads stop, so it is interrupted (it then prints its summary) once ingest has stood still
# for five seconds.
send_users() {
    local started=$SECONDS load before now still=0
    FIRST_USER="$1" USERS_PER_THREAD="$2" wrk -t1 -c"${LOAD_CONNECTIONS:-8}" -d24h \
        -s "$root/scripts/bench/events-users.lua" "${H[@]}" "$url" > "$work/users.txt" &
    load=$!
    before="$(metric vexil_events_ingested_total)"
    while ((still < 5)); do
        sleep 1
        now="$(metric vexil_events_ingested_total)"
        if [[ "$now" == "$before" ]]; then still=$((still + 1)); else still=0; fi
        before=$now
    done
    kill -INT "$load"
    wait "$load" || true
    caught_up
    awk -v s=$((SECONDS - started)) '/^2xx responses:/ {printf "   %d users acknowledged, processed in %d s\n", $3 * 250, s}' \
        "$work/users.txt"
}

echo "== first half: $half users (server workers: $workers)"
send_users 0 "$half"
first_rss="$(rss_mib)"
echo "   RSS after the first half: $first_rss MiB"
echo "== second half: $half more users"
send_users 1000000000 "$half"
second_rss="$(rss_mib)"
echo "   RSS after both halves: $second_rss MiB (growth over the second half: $(awk -v a="$first_rss" -v b="$second_rss" 'BEGIN {printf "%.1f", b - a}') MiB)"
echo "   processed events: $(metric vexil_events_processed_total); state database: $(du -sh "$work/data/events" | cut -f1)"

export PACE_MS="${PACE_MS:-20}" FIRST_USER=2000000000 USERS_PER_THREAD=1000000000
connections="${CONNECTIONS:-5}"
connections="$connections" run "new users, 500-event batches, ${PACE_MS} ms between batches per connection" \
    events-users.lua > "$work/run.txt" &
watch_lag $!
echo "   RSS after the new users: $(rss_mib) MiB"
caught_up

FIRST_USER=0 KNOWN_USERS="$half" connections="$connections" \
    run "returning users drawn at random from the first $half, ${PACE_MS} ms between batches per connection" \
    events-users.lua > "$work/run.txt" &
watch_lag $!
caught_up

FIRST_USER=0 KNOWN_USERS="$half" KNOWN_DRAW=zipf connections="$connections" \
    run "returning users drawn by Zipf's law (exponent ${ZIPF_EXPONENT:-0.99}) from the first $half, ${PACE_MS} ms between batches per connection" \
    events-users.lua > "$work/run.txt" &
watch_lag $!
echo "   RSS at the end: $(rss_mib) MiB"
report_machine
