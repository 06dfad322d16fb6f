#!/usr/bin/env bash
# HTTP load benchmark of `vexil serve` (release build) on loopback with wrk:
#   1. POST /v1/flags/{key}/evaluate over a 100-flag set with rules (target >= 50,000 req/s,
#      p99 <= 2 ms);
#   2. OFREP bulk evaluation of the 100 flags (target >= 5,000 req/s);
# and the server's peak RSS under that load (target <= 100 MiB).
#
# Environment: WORKERS (server worker threads, default 2), THREADS/CONNECTIONS (wrk, default
# 1/32), DURATION (default 10s). wrk and the server share the machine; on 2 cores, two server
# workers beside one wrk thread measured best (see docs/benchmarks/http.md).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
workers="${WORKERS:-2}"
threads="${THREADS:-1}"
connections="${CONNECTIONS:-32}"
duration="${DURATION:-10s}"
key="vx_bench_admin_key_0123456789"

command -v wrk > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q wrk > /dev/null; }
cargo build --quiet --release --manifest-path "$root/Cargo.toml" -p vexil
vexil="$root/target/release/vexil"

work="$(mktemp -d)"
trap 'kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; rm -rf "$work"' EXIT

VEXIL_ADMIN_KEY="$key" "$vexil" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    --workers "$workers" --log-level warn,vexil_server::server=info > /dev/null 2> "$work/log" &
server=$!
for _ in $(seq 100); do
    grep -q '"listening"' "$work/log" 2> /dev/null && break
    sleep 0.1
done
address="$(grep -o '"address":"[^"]*"' "$work/log" | head -1 | cut -d'"' -f4)"
url="http://$address"

# 100 flags, each with two rules (an all-of on country and plan, a numeric range) and a split.
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

run() {
    local name="$1" script="$2"
    echo "== $name: wrk -t$threads -c$connections -d$duration --latency (server workers: $workers)"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$root/scripts/bench/$script" \
        -H "Authorization: Bearer $key" -H "Content-Type: application/json" "$url" \
        | grep -E 'Requests/sec|Non-2xx|Socket errors|^ +(50|75|90|99)%|Latency '
}

wrk -t1 -c8 -d2s -s "$root/scripts/bench/evaluate.lua" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" "$url" > /dev/null
run "POST /v1/flags/{key}/evaluate, 100 flags with rules" evaluate.lua
run "OFREP bulk, 100 flags" ofrep-bulk.lua
echo "== server peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server/status")"
echo "== machine: $(nproc) cores, $(awk '/model name/ {sub(/.*: /, ""); print; exit}' /proc/cpuinfo)"
