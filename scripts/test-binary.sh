#!/usr/bin/env bash
# Builds the debug `vexil` binary that the engine-level test scripts (OFREP, Schemathesis, ops)
# run, and prints its path.
#
# It is the binary `cargo test --workspace` builds for the integration tests. `cargo build -p
# vexil` would resolve tokio without the features the tests' dev-dependencies add (`process`,
# `test-util`), and so compile every crate above tokio a second time: minutes and about 2 GB of
# artifacts in a CI run that has already built the tests. Both binaries serve alike.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo test --quiet --workspace --no-run --manifest-path "$root/Cargo.toml" >&2
echo "${CARGO_TARGET_DIR:-$root/target}/debug/vexil"
