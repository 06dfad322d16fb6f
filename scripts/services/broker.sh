#!/usr/bin/env bash
# A throwaway Kafka-protocol broker for tests and local runs: tansu (crates.io), built with
# `cargo install` on first use and reused from ~/.cargo/bin afterwards. Apache Kafka and
# Redpanda are not installable from the registries this project may use.
#
#   eval "$(bash scripts/services/broker.sh start)"   # exports VEXIL_TEST_BROKER, VEXIL_BROKER_DIR
#   bash scripts/services/broker.sh stop "$VEXIL_BROKER_DIR"
#
# It listens and advertises on a free loopback port only (tansu's default listener is
# 0.0.0.0:9092). Storage: PostgreSQL when BROKER_STORAGE is a postgres:// URL (durable, as in
# production), else tansu's in-memory engine (a throwaway broker for tests).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0

tansu_bin() {
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
    if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
        echo "$bin"
        return
    fi
    log "building tansu $TANSU_VERSION (cargo install; several minutes on a fresh machine)"
    cargo install --quiet --locked tansu --version "$TANSU_VERSION" --features dynostore >&2
    echo "$bin"
}

start() {
    local bin dir port
    bin=$(tansu_bin)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/vexil-broker.XXXXXX")
    port=$(free_port)
    "$bin" broker \
        --cluster-id vexil_test \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "${BROKER_STORAGE:-memory://tansu/}" \
        >"$dir/broker.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 100); do
        if listening "$port"; then
            echo "export VEXIL_TEST_BROKER=127.0.0.1:$port"
            echo "export VEXIL_BROKER_DIR=$dir"
            log "tansu on 127.0.0.1:$port"
            return
        fi
        sleep 0.1
    done
    cat "$dir/broker.log" >&2
    log "tansu did not start"
    exit 1
}

stop() { stop_pid_dir "${1:-${VEXIL_BROKER_DIR:-}}" broker; }

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
