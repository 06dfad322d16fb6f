# Sourced by the engine scripts in this folder: logging and a free loopback port.

# log MESSAGE: to standard error, named after the script (standard output carries the exports).
log() { echo "$(basename "$0"): $*" >&2; }

# free_port: a loopback port nothing listens on (checked by connecting; the caller retries if
# another process takes it before the engine binds it).
free_port() {
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    log "no free loopback port found"
    exit 1
}

# listening PORT: whether something accepts connections on the loopback port.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pid_dir DIR WHAT: stops the engine whose pid file is in DIR and removes DIR (WHAT names
# the engine in the error when DIR is missing).
stop_pid_dir() {
    local dir=$1
    [[ -n "$dir" && -f "$dir/pid" ]] || { log "no $2 directory given"; exit 1; }
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    rm -rf "$dir"
}
