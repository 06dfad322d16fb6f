#!/usr/bin/env bash
# Runs tests/ofrep-web/test_ofrep_web.mjs: the published OpenFeature web SDK and OFREP web
# provider (pinned in tests/ofrep-web/package.json) against a real `vexil serve`, live updates
# through the OFREP event stream included. Needs Node.js 20+ and npm; installs the packages into
# target/ofrep-web (reused between runs) and builds the binary first. Prints "N passed,
# N failed"; exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${OFREP_WEB_DIR:-$root/target/ofrep-web}"

binary="$(bash "$root/scripts/test-binary.sh")"
mkdir -p "$work"
cp "$root/tests/ofrep-web/package.json" "$root/tests/ofrep-web/test_ofrep_web.mjs" "$work/"
(cd "$work" && npm install --silent --no-audit --no-fund)
exec node "$work/test_ofrep_web.mjs" "$binary"
