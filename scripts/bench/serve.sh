# shellcheck shell=bash
# Sourced by the load benchmarks: builds the vexil binary, starts `vexil serve` on a free
# loopback port in a temporary data directory (stopped and removed on exit), and sets
# $root, $vexil, $key, $work, $server (pid) and $url. Extra `serve` arguments: "$@".
# Environment: WORKERS (server worker threads, default 2), THREADS/CONNECTIONS (wrk, default
# 1/32), DURATION (default 10s), BUILD_PROFILE (default profiling), VEXIL_BINARY (a vexil binary
# to run instead of building one: an older build, for alternated runs of old and new),
# ENVIRONMENTS (default 1: environments the server holds; the load goes to production, and
# each other environment, bench_2 … bench_N, gets the benchmark's 100 flags too), SEED_DATA (a
# data directory the server starts from, copied in first: a state saved by returning-users.sh).
#
# The `profiling` profile is the release build with line tables (root Cargo.toml): the same
# optimised code users run, and `perf record -g -p $server` or callgrind can name its
# functions. BUILD_PROFILE=release measures the users' binary itself (no debug info).
# A script may define `launch` before sourcing this file, to run the server under a tool: it is
# called with the server's command line and must `exec` it (the default is `exec "$@"`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
workers="${WORKERS:-2}"
threads="${THREADS:-1}"
connections="${CONNECTIONS:-32}"
duration="${DURATION:-10s}"
profile="${BUILD_PROFILE:-profiling}"
key="vx_bench_admin_key_0123456789"
# The wrk scripts load their shared parts (acknowledged.lua) from here.
export VEXIL_BENCH_DIR="$root/scripts/bench"

command -v wrk > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q wrk > /dev/null; }
if [[ -n ${VEXIL_BINARY:-} ]]; then
    vexil="$VEXIL_BINARY"
    echo "== binary: $vexil"
else
    cargo build --quiet --profile "$profile" --manifest-path "$root/Cargo.toml" -p vexil
    vexil="$root/target/$profile/vexil"
    echo "== build: $profile profile ($vexil)"
fi

work="$(mktemp -d)"
servers=()
stop_servers() {
    local pid
    for pid in ${servers[@]+"${servers[@]}"}; do
        kill "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    rm -rf "$work"
}
trap stop_servers EXIT

declare -F launch > /dev/null || launch() { exec "$@"; }

# start_server LOG COMMAND...: starts a server in the background (stopped on exit) with its
# stderr in LOG, waits until it logs that it is listening (up to 60 s), and sets $started_pid
# and $started_url. The server must log a JSON line with "listening" and "address".
start_server() {
    local log="$1" address=""
    shift
    "$@" > /dev/null 2> "$log" &
    started_pid=$!
    servers+=("$started_pid")
    for _ in $(seq 600); do
        address="$(grep '"listening"' "$log" 2> /dev/null | grep -o '"address":"[^"]*"' | head -1 | cut -d'"' -f4 || true)"
        [[ -n $address ]] && break
        kill -0 "$started_pid" 2> /dev/null || break
        sleep 0.1
    done
    [[ -n $address ]] || { echo "the server did not start: $*" >&2; cat "$log" >&2; exit 1; }
    started_url="http://$address"
}

if [[ -n ${SEED_DATA:-} ]]; then
    cp -a "$SEED_DATA" "$work/data"
    # Written back now, or the copy's gigabytes reach the disk during the run and take its share.
    sync -f "$work/data"
fi
VEXIL_ADMIN_KEY="$key" start_server "$work/log" launch "$vexil" serve --listen 127.0.0.1:0 \
    --data-dir "$work/data" --workers "$workers" --log-level warn,vexil_server::server=info "$@"
server=$started_pid
url=$started_url

# import_rule_flags: imports the 100 benchmark flags of the evaluate runs, flag_0 to flag_99,
# each with two rules (an all-of on country and plan, a numeric range) and a split.
import_rule_flags() {
    {
        echo '{"flags": ['
        for i in $(seq 0 99); do
            [[ $i -gt 0 ]] && echo ','
            printf '{"key": "flag_%d", "enabled": true, "rules": [' "$i"
            printf '{"id": "us_pro", "when": {"all": [{"attr": "country", "op": "in", "values": ["US", "CA"]}, {"attr": "plan", "op": "eq", "value": "pro"}]}, "serve": {"variant": "on"}},'
            printf '{"id": "adults", "when": {"attr": "age", "op": "gte", "value": 18}, "serve": {"split": {"on": 1, "off": 1}, "rollout": 50}}],'
            printf '"default": {"split": {"on": 1}, "rollout": %d}}' "$((i % 100))"
        done
        echo ']}'
    } > "$work/flags.json"
    "$vexil" flags import "$work/flags.json" --server "$url" --key "$key" > /dev/null
    load_other_environments
}

# load_other_environments: creates bench_2 … bench_$ENVIRONMENTS, each with the 100 flags of
# import_rule_flags, so that the measured environment (production) shares the server with others.
load_other_environments() {
    local n
    for n in $(seq 2 "${ENVIRONMENTS:-1}"); do
        curl -sf "$url/v1/admin/environments" -H "Authorization: Bearer $key" \
            -H 'Content-Type: application/json' -d '{"key": "bench_'"$n"'", "name": "bench '"$n"'"}' > /dev/null
        [[ -f $work/flags.json ]] && "$vexil" flags import "$work/flags.json" --env "bench_$n" \
            --server "$url" --key "$key" > /dev/null
    done
    return 0
}

# warm_up SCRIPT [URL]: two seconds of wrk (one thread, 8 connections), output discarded.
warm_up() {
    wrk -t1 -c8 -d2s -s "$root/scripts/bench/$1" -H "Authorization: Bearer $key" \
        -H "Content-Type: application/json" "${2:-$url}" > /dev/null
}

# run NAME SCRIPT [URL]: a wrk run of scripts/bench/SCRIPT with the admin key, summarised;
# against vexil unless URL is given.
run() {
    local name="$1" script="$2" target="${3:-$url}"
    echo "== $name: wrk -t$threads -c$connections -d$duration --latency (server workers: $workers)"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$root/scripts/bench/$script" \
        -H "Authorization: Bearer $key" -H "Content-Type: application/json" "$target" \
        | grep -E 'Requests/sec|Non-2xx|^2xx responses|^paced sends|Socket errors|^ +(50|75|90|99)%|Latency '
}

# acknowledged_rate RUN: events/s acknowledged (2xx answers) in the summary of a run of
# events.lua (or events-paced.lua), from the "2xx responses: N of N in Ts" line it prints; wrk's
# Requests/sec counts 429s and errors too.
acknowledged_rate() {
    awk '/^2xx responses:/ {sub(/s$/, "", $7); found = 1; printf "   acknowledged events/s (2xx answers only): %.0f\n", $3 * 500 / $7}
        END {if (!found) print "   acknowledged events/s: unknown (no 2xx count in the wrk output)"}' "$1"
}

# The server's peak RSS so far, and the machine.
report_machine() {
    echo "== server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server/status")"
    echo "== machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo)"
}

metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
# metrics NAME NAME: both values from one read of /metrics, so they belong to the same moment.
metrics() { curl -s "$url/metrics" | awk -v a="$1" -v b="$2" '$1 == a {x = $2} $1 == b {y = $2} END {print x, y}'; }

# watch_lag PID: samples the pipeline's lag every second while the load run PID (a `run` of an
# events script writing $work/run.txt) lasts, then prints the run's summary and the largest lag.
# The server's vexil_events_lag_seconds is whole seconds rounded down ("0 s" for a backlog of
# 100,000 events), too coarse for a 2 s target. The lag in time is estimated instead from each
# sample's backlog and the rate events arrived at since the previous sample: at a steady offered
# rate, N events behind at R events/s is N / R seconds behind (Little's law).
watch_lag() {
    local load=$1 max_events=0 max_ms=0 samples=0 timed=0 prev_ingested="" prev_ns="" now_ns events ingested ms
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
}
