# Sourced by the load benchmarks: builds the binary, starts `vexil serve` on a free loopback
# port in a temporary data directory (stopped and removed on exit), and sets $root, $vexil,
# $key, $work, $server (pid) and $url. Extra `serve` arguments: "$@".
# Environment: WORKERS (server worker threads, default 2), THREADS/CONNECTIONS (wrk, default
# 1/32), DURATION (default 10s), BUILD_PROFILE (default profiling).
#
# The `profiling` profile is the release build with line tables (root Cargo.toml): the same
# optimised code users run, and `perf record -g -p $server` or callgrind can name its
# functions. BUILD_PROFILE=release measures the users' binary itself (no debug info).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
workers="${WORKERS:-2}"
threads="${THREADS:-1}"
connections="${CONNECTIONS:-32}"
duration="${DURATION:-10s}"
profile="${BUILD_PROFILE:-profiling}"
key="vx_bench_admin_key_0123456789"

command -v wrk > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q wrk > /dev/null; }
cargo build --quiet --profile "$profile" --manifest-path "$root/Cargo.toml" -p vexil
vexil="$root/target/$profile/vexil"
echo "== build: $profile profile ($vexil)"

work="$(mktemp -d)"
trap 'kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; rm -rf "$work"' EXIT

VEXIL_ADMIN_KEY="$key" "$vexil" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
    --workers "$workers" --log-level warn,vexil_server::server=info "$@" > /dev/null 2> "$work/log" &
server=$!
for _ in $(seq 100); do
    grep -q '"listening"' "$work/log" 2> /dev/null && break
    sleep 0.1
done
address="$(grep -o '"address":"[^"]*"' "$work/log" | head -1 | cut -d'"' -f4)"
url="http://$address"

# run NAME SCRIPT: a wrk run of scripts/bench/SCRIPT with the admin key, summarised.
run() {
    local name="$1" script="$2"
    echo "== $name: wrk -t$threads -c$connections -d$duration --latency (server workers: $workers)"
    wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$root/scripts/bench/$script" \
        -H "Authorization: Bearer $key" -H "Content-Type: application/json" "$url" \
        | grep -E 'Requests/sec|Non-2xx|^2xx responses|Socket errors|^ +(50|75|90|99)%|Latency '
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
