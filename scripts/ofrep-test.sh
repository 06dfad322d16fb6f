#!/usr/bin/env bash
# Runs tests/ofrep/test_ofrep.py: the published OpenFeature Python SDK and OFREP provider
# against a real `vexil serve`. Installs them into a virtual environment (reused between runs)
# and builds the binary first. Prints "N passed, N failed"; exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${OFREP_VENV:-$root/target/ofrep-venv}"

binary="$(bash "$root/scripts/test-binary.sh")"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/ofrep/requirements.txt"
exec "$venv/bin/python" "$root/tests/ofrep/test_ofrep.py" "$binary"
