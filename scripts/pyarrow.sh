#!/usr/bin/env bash
# Installs pyarrow (tests/parquet/requirements.txt) into a virtual environment under target/
# (reused between runs) for the test that reads the Parquet archive with it, and prints the
# variable that test reads:
#
#   eval "$(bash scripts/pyarrow.sh)"    # exports VEXIL_TEST_PYARROW=<the venv's python>
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PYARROW_VENV:-$root/target/pyarrow-venv}"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/parquet/requirements.txt" >&2
"$venv/bin/python" -c "import pyarrow.parquet" >&2
echo "export VEXIL_TEST_PYARROW=$venv/bin/python"
