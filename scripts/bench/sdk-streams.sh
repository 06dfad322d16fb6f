#!/usr/bin/env bash
# SDK stream fan-out: one `vexil serve` (profiling build) holds STREAMS open `GET /v1/sdk/stream`
# connections (default 10,000, opened at most 256 at a time, all on loopback), then a flag is
# changed through the admin API ROUNDS times (default 5, one second apart) and
# vexil-sdk-streams (crates/vexil-bench) times the arrival of each change on every stream.
# Target: 99 % of the streams within 1 s. Also reports the server's RSS (sampled every second)
# and the CPU it used. Each stream needs a file descriptor on both sides: the limit is raised
# to the hard limit first (at least STREAMS + 1,000 are needed). Environment as in serve.sh.
set -euo pipefail
streams="${STREAMS:-10000}"
rounds="${ROUNDS:-5}"
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > streams + 1000)) || { echo "the fd limit $(ulimit -n) is too low for $streams streams" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

cargo build --quiet --profile "$profile" --manifest-path "$root/Cargo.toml" -p vexil-bench --bin vexil-sdk-streams
ticks_per_second="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }

echo "== $streams SDK streams, $rounds changes (server workers: $workers)"
rss_idle="$(rss_kib)"
cpu_start="$(cpu_ticks)" start_ns="$(date +%s%N)"
"$root/target/$profile/vexil-sdk-streams" "$url" "$key" "$streams" "$rounds" > "$work/streams.txt" &
load=$!
rss_max=0
while kill -0 "$load" 2> /dev/null; do
    rss="$(rss_kib)"
    ((rss > rss_max)) && rss_max=$rss
    sleep 1
done
wait "$load"
cpu_end="$(cpu_ticks)" end_ns="$(date +%s%N)"
cat "$work/streams.txt"
awk -v idle="$rss_idle" -v max="$rss_max" 'BEGIN {printf "== server RSS: %.1f MiB before the streams, %.1f MiB at most while they were open (%.1f KiB per stream)\n", idle / 1024, max / 1024, (max - idle) / '"$streams"'}'
awk -v t="$((cpu_end - cpu_start))" -v hz="$ticks_per_second" -v ns="$((end_ns - start_ns))" \
    'BEGIN {printf "== server CPU: %.2f s over %.1f s of opening, holding and changing (%.1f %% of one core)\n", t / hz, ns / 1e9, 100 * t / hz / (ns / 1e9)}'
report_machine
