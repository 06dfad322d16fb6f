#!/usr/bin/env bash
# Instructions per request of `POST /v1/flags/{key}/evaluate`, counted with callgrind: the server
# runs under `valgrind --tool=callgrind`, and one connection sends REQUESTS requests, one at a time
# (scripts/bench/evaluate-count.py), to
#   (a) `plain`: a flag whose rule (country = US, matched) serves a variant;
#   (b) `experiment`: the same flag, but its rule serves {"experiment": "bench"}, a running
#       two-arm experiment; USERS users in turn, each assigned during the warm-up, so that every
#       counted request answers from a sticky assignment;
# and it prints the instructions per request of each and the ratio experiment/plain (target
# <= 1.2). The counters are zeroed after the warm-up (callgrind_control -z) and dumped after each
# run (callgrind_control -d), so startup, imports and warm-up are not counted; every thread of
# the server is (workers and the background tasks, during the run and the second after it, when
# the event pipeline takes the exposures). With OUT set, the two dumps are copied there
# (callgrind.out.plain, callgrind.out.experiment) for callgrind_annotate.
#
# Environment: REQUESTS (per flag, default 2000), USERS (default 100), WORKERS (default 2),
# OUT. Built with the cargo profile `profiling` when Cargo.toml has one, else `release` (debug
# symbols for callgrind_annotate if the profile carries them).
set -euo pipefail
requests="${REQUESTS:-2000}"
users="${USERS:-100}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if grep -q '^\[profile\.profiling\]' "$root/Cargo.toml"; then BUILD_PROFILE=profiling; else BUILD_PROFILE=release; fi
export BUILD_PROFILE

command -v valgrind > /dev/null || { apt-get update -q > /dev/null && apt-get install -y -q valgrind > /dev/null; }
# shellcheck disable=SC2317  # called by serve.sh, once it has made $work
launch() { exec valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$@"; }
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

admin() {
    curl -sf "$url/v1/admin/$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' "${@:2}" > /dev/null
}
admin experiments -d '{"key": "bench", "variants": [{"key": "control", "weight": 1, "value": "a"},
    {"key": "treatment", "weight": 1, "value": "b"}]}'
admin experiments/bench/start -X POST
# flag NAME SERVE: a string flag whose one rule (country = US) serves SERVE.
flag() {
    admin flags -d '{"key": "'"$1"'", "type": "string", "enabled": true, "variants": {"off": "none", "on": "a"},
        "off_variant": "off", "rules": [{"id": "us", "when": {"attr": "country", "op": "eq", "value": "US"},
        "serve": '"$2"'}], "default": {"variant": "off"}}'
}
flag plain '{"variant": "on"}'
flag experiment '{"experiment": "bench"}'

# count FLAG N: N requests to FLAG over one connection; prints the number answered.
count() {
    python3 "$root/scripts/bench/evaluate-count.py" "$url" "$key" "$1" "$users" "$2"
}

# Warm-up: every user once on both flags (the experiment's assignments are made here), twice.
for _ in 1 2; do
    count plain "$users" > /dev/null
    count experiment "$users" > /dev/null
done

# The experiment flag must answer with an experiment's variant, else the count is of another path.
answer="$(curl -sf "$url/v1/flags/experiment/evaluate" -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d '{"user_id": "user_0", "context": {"country": "US"}}')"
grep -Eq '"variant":"(control|treatment)"' <<< "$answer" || { echo "not served by the experiment: $answer" >&2; exit 1; }

# control OPTION: callgrind_control OPTION for the server, quiet unless it fails.
control() {
    callgrind_control "$1" "$server" > "$work/control" 2>&1 || { cat "$work/control" >&2; exit 1; }
}

# instructions FLAG: zeroes the counters, sends $requests requests, waits a second, dumps, and
# prints "FLAG ANSWERED INSTRUCTIONS".
instructions() {
    control -z
    local answered total dump
    answered="$(count "$1" "$requests")"
    sleep 1
    touch "$work/counted"
    control -d
    dump="$(find "$work" -name 'callgrind.out.*' -newer "$work/counted" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)"
    [[ -n $dump ]] || { echo "no callgrind dump after the $1 run" >&2; exit 1; }
    total="$(awk '/^(totals|summary):/ {print $2; exit}' "$dump")"
    [[ -z ${OUT:-} ]] || { mkdir -p "$OUT" && cp "$dump" "$OUT/callgrind.out.$1"; }
    echo "$1 $answered $total"
}

echo "== POST /v1/flags/{key}/evaluate under callgrind ($BUILD_PROFILE build, $workers workers):" \
    "$requests requests per flag, one connection, $users users"
{
    instructions plain
    instructions experiment
} | awk '{
        per[$1] = $3 / $2
        printf "%-10s %d requests, %d instructions, %.0f instructions per request\n", $1, $2, $3, $3 / $2
    }
    END {
        r = per["experiment"] / per["plain"]
        printf "== ratio experiment/plain (instructions per request): %.3f (target <= 1.2: %s)\n", r, (r <= 1.2) ? "met" : "not met"
    }'
