#!/usr/bin/env bash
# Runs tests/schemathesis/run_schemathesis.py: Schemathesis (pinned in
# tests/schemathesis/requirements.txt) generates requests for every operation of the OpenAPI
# document a real `vexil serve` serves, with the admin key and without a key, and checks every
# answer: no 5xx, status code, content type, headers and body as documented. Installs it into a
# virtual environment (reused between runs) and builds the binary first. Prints
# "schemathesis: N passed, N failed"; exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}"

binary="$(bash "$root/scripts/test-binary.sh")"
# The newest Python 3 at hand: CPython 3.11 before 3.11.8 can fail inside Hypothesis with
# "AST constructor recursion depth mismatch" (CPython gh-106905), which is no finding about vexil.
if [[ ! -x "$venv/bin/python" ]]; then
    python="${SCHEMATHESIS_PYTHON:-}"
    if [[ -z "$python" ]]; then
        for candidate in python3.13 python3.12 python3; do
            if "$candidate" -c 'import sys' 2>/dev/null; then
                python=$candidate
                break
            fi
        done
    fi
    "${python:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/schemathesis/requirements.txt"
exec "$venv/bin/python" "$root/tests/schemathesis/run_schemathesis.py" "$binary"
