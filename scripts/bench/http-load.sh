#!/usr/bin/env bash
# HTTP load benchmark of `vexil serve` (profiling build) on loopback with wrk:
#   1. POST /v1/flags/{key}/evaluate over a 100-flag set with rules (target >= 50,000 req/s,
#      p99 <= 2 ms);
#   2. OFREP bulk evaluation of the 100 flags (target >= 5,000 req/s);
# and the server's peak RSS under that load (target <= 100 MiB).
#
# Environment: WORKERS (server worker threads, default 2), THREADS/CONNECTIONS (wrk, default
# 1/32), DURATION (default 10s). wrk and the server share the machine; on 2 cores, two server
# workers beside one wrk thread measured best (see docs/benchmarks/http.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/serve.sh"

import_rule_flags
warm_up evaluate.lua
run "POST /v1/flags/{key}/evaluate, 100 flags with rules" evaluate.lua
run "OFREP bulk, 100 flags" ofrep-bulk.lua
report_machine
