# shellcheck shell=bash
# Sourced after serve.sh by the benchmarks of the pipeline's per-user state (scale-users.sh,
# returning-users.sh): the experiment their users are exposed to, and how users are sent and
# processing waited for. Users are u<n>, each exposed to `checkout` and purchasing once
# (scripts/bench/events-users.lua).

H=(-H "Authorization: Bearer $key" -H "Content-Type: application/json")

# start_checkout: creates and starts the experiment `checkout` (two variants; a conversion and a
# sum metric on `purchase`).
start_checkout() {
    curl -sf "$url/v1/admin/experiments" "${H[@]}" -d '{"key": "checkout",
        "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
        "metrics": [{"key": "purchase_rate", "kind": "conversion", "event": "purchase", "role": "primary"},
                    {"key": "revenue", "kind": "sum", "event": "purchase"}]}' > /dev/null
    curl -sf -X POST "$url/v1/admin/experiments/checkout/start" "${H[@]}" > /dev/null
}

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

# load_halves USERS: USERS new users in two halves (u0 … and u1000000000 …), as scale-users.sh
# loads them; returning users are then drawn from the first half.
load_halves() {
    local half=$(($1 / 2))
    echo "== first half: $half users (server workers: $workers)"
    send_users 0 "$half"
    local first_rss second_rss
    first_rss="$(rss_mib)"
    echo "   RSS after the first half: $first_rss MiB"
    echo "== second half: $half more users"
    send_users 1000000000 "$half"
    second_rss="$(rss_mib)"
    echo "   RSS after both halves: $second_rss MiB (growth over the second half: $(awk -v a="$first_rss" -v b="$second_rss" 'BEGIN {printf "%.1f", b - a}') MiB)"
    echo "   processed events: $(metric vexil_events_processed_total); state database: $(du -sh "$work/data/events" | cut -f1)"
}

# offer_returning KNOWN [DRAW]: returning users drawn from u0 … u<KNOWN - 1> for DURATION,
# uniformly or, with DRAW zipf, by Zipf's law (ZIPF_EXPONENT, default 0.99), on CONNECTIONS
# connections (default 5) each pausing PACE_MS after every answer; the lag watched and the run
# summarised (watch_lag).
offer_returning() {
    local known="$1" draw="${2:-uniform}" how="at random"
    if [[ $draw == zipf ]]; then
        how="by Zipf's law (exponent ${ZIPF_EXPONENT:-0.99})"
    fi
    FIRST_USER=0 KNOWN_USERS="$known" KNOWN_DRAW="$draw" connections="${CONNECTIONS:-5}" \
        run "returning users drawn $how from the first $known, ${PACE_MS} ms between batches per connection" \
        events-users.lua > "$work/run.txt" &
    watch_lag $!
}
