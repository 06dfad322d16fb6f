#!/usr/bin/env bash
# The whole test suite: the README's test command. Installs what the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
