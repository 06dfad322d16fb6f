#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and local runs: installs the Debian `postgresql`
# package if no server binaries are found, creates a cluster in a temporary directory, and
# starts it on a free loopback port with trust authentication (loopback only).
#
#   eval "$(bash scripts/services/postgres.sh start)"   # exports VEXIL_TEST_DATABASE_URL, VEXIL_PG_DIR
#   bash scripts/services/postgres.sh stop "$VEXIL_PG_DIR"
#
# The server refuses to run as root, so as root the cluster belongs to the `postgres` user.
# Durability is off (fsync=off): the cluster is thrown away, and tests should not wait on disks.
# VEXIL_PG_DURABLE=1 keeps PostgreSQL's durable defaults (for benchmarks).
set -euo pipefail

source "$(dirname "$0")/lib.sh"

bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
    fi
}

install() {
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed; install the 'postgresql' package (or run this as root)"
        exit 1
    fi
    log "installing PostgreSQL from the Debian packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Runs a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin
    bin=$(bin_dir)
    if [[ -z "$bin" ]]; then
        install
        bin=$(bin_dir)
    fi
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/vexil-postgres.XXXXXX")
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [[ -n "${VEXIL_PG_DURABLE:-}" ]] && durability=""
    local port
    for _ in 1 2 3; do
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability -c max_connections=500" \
            >/dev/null; then
            echo "export VEXIL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
            echo "export VEXIL_PG_DIR=$dir"
            log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (cluster in $dir)"
            return
        fi
        # The port was taken between the check and the start: try another one.
        rm -f "$dir/server.log"
    done
    log "PostgreSQL did not start"
    exit 1
}

stop() {
    local dir=${1:-${VEXIL_PG_DIR:-}}
    [[ -n "$dir" && -d "$dir/data" ]] || { log "no cluster directory given"; exit 1; }
    as_owner "$(bin_dir)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
