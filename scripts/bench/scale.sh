#!/usr/bin/env bash
# Scale benchmark of the configuration: FLAGS typical flags (default 10,000) of about 600 bytes
# each — a segment rule, two targeting rules (one serving a split), overrides and a split
# default — over SEGMENTS segments (default 100), and the figures of issue 14:
#   - a flag write visible to evaluation (PUT, then evaluations until the new value is served),
#     median of WRITES writes, on a 10-flag configuration and on the large one; then the same
#     for a segment write (one segment's list of user ids changed, until a flag using it answers
#     by it);
#   - start to `/ready` and RSS at ready, after a restart on the large configuration;
#   - the first `POST /v1/evaluate` of every flag for a new context, then later ones;
#   - the size of `GET /v1/sdk/flags`, plain and with `Accept-Encoding: gzip`.
# Targets: RSS at ready <= 150 MiB, start to /ready <= 300 ms, write visible <= 10 ms median (and
# <= 3x the 10-flag figure), first evaluation of all flags <= 100 ms, SDK document compressed.
# Then the users' figures of scripts/bench/scale-users.sh (USERS new users, default 20,000,000;
# USERS=0 leaves them out).
#
# Environment: FLAGS, SEGMENTS, WRITES (default 21), USERS, BUILD_PROFILE and WORKERS as serve.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

flags="${FLAGS:-10000}"
segments="${SEGMENTS:-100}"
writes="${WRITES:-21}"
measure=(python3 "$root/scripts/bench/scale.py" --key "$key" --writes "$writes")

echo "== writes visible on a 10-flag configuration"
python3 "$root/scripts/bench/scale.py" generate --flags 10 --segments 2 > "$work/small.json"
"$vexil" flags import "$work/small.json" --server "$url" --key "$key" > /dev/null
"${measure[@]}" writes --url "$url"

echo "== $flags flags, $segments segments"
python3 "$root/scripts/bench/scale.py" generate --flags "$flags" --segments "$segments" > "$work/large.json"
echo "   flags file: $(stat -c %s "$work/large.json") bytes"
# The admin key is created on a fresh store only: start a server on the new directory first,
# import beside it (the CLI writes the directory directly; the server picks the change up).
VEXIL_ADMIN_KEY="$key" start_server "$work/large.log" "$vexil" serve --listen 127.0.0.1:0 \
    --data-dir "$work/large" --workers "$workers" --log-level warn,vexil_server::server=info
"$vexil" flags import "$work/large.json" --data-dir "$work/large" > /dev/null
"${measure[@]}" wait-loaded --url "$started_url" --flags "$flags"
echo "   peak RSS of the server that took the import: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$started_pid/status")"
kill "$started_pid"
wait "$started_pid" 2> /dev/null || true

"${measure[@]}" restart --vexil "$vexil" --data-dir "$work/large" --workers "$workers" --flags "$flags"


# The users' figures: scripts/bench/scale-users.sh, on its own server (USERS=0 leaves them out).
if [[ "${USERS:-20000000}" != 0 ]]; then
    VEXIL_BINARY="$vexil" bash "$root/scripts/bench/scale-users.sh"
fi
