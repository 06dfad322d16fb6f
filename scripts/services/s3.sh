#!/usr/bin/env bash
# A throwaway S3-compatible object store for tests and local runs: moto's server (PyPI
# `moto[server]`), installed into a virtual environment that is kept under ~/.cache and reused.
#
#   eval "$(bash scripts/services/s3.sh start)"
#       # exports AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
#       # VEXIL_TEST_S3_URL (s3://vexil-test, an empty bucket) and VEXIL_S3_DIR
#   bash scripts/services/s3.sh stop "$VEXIL_S3_DIR"
#
# It listens on a free loopback port only. Its objects live in memory and vanish on stop.
set -euo pipefail

source "$(dirname "$0")/lib.sh"

MOTO_VERSION=5.2.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/vexil/moto-$MOTO_VERSION"

moto_server() {
    if [[ ! -x "$VENV/bin/moto_server" ]]; then
        log "installing moto[server] $MOTO_VERSION into $VENV"
        python3 -m venv "$VENV" >&2 || {
            log "python3 -m venv failed; installing python3-venv"
            apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            python3 -m venv "$VENV" >&2
        }
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
    fi
    echo "$VENV/bin/moto_server"
}

start() {
    local bin dir port
    bin=$(moto_server)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/vexil-s3.XXXXXX")
    port=$(free_port)
    "$bin" -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        # An unsigned PUT creates the bucket: moto accepts any credentials.
        if "$VENV/bin/python" -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$port/vexil-test', method='PUT'))" 2>/dev/null; then
            echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
            echo "export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1"
            echo "export VEXIL_TEST_S3_URL=s3://vexil-test"
            echo "export VEXIL_S3_DIR=$dir"
            log "moto S3 on 127.0.0.1:$port, bucket vexil-test"
            return
        fi
        sleep 0.1
    done
    cat "$dir/server.log" >&2
    log "moto did not start"
    exit 1
}

stop() { stop_pid_dir "${1:-${VEXIL_S3_DIR:-}}" S3; }

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
