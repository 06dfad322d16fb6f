#!/usr/bin/env bash
# The web console's page weight and speed: the first load of the flags page with 1,000 flags in
# headless Chromium on loopback with an empty cache (navigation and resource timing, until the
# page has drawn the list), and the bytes its files and API calls took on the wire. Targets
# (BENCHMARKS.md): drawn under 1 s, the console's files under 300 KB compressed.
# Installs Chromium and chromedriver when missing (scripts/chromium.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$(bash "$root/scripts/chromium.sh")"
cargo test --release --manifest-path "$root/Cargo.toml" -p vexil --test console -- \
    --ignored --nocapture --exact weight::console_page_weight
