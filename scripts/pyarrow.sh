#!/usr/bin/env bash
# Installs the Python readers the tests check vexil's files with into a virtual environment
# under target/ (reused between runs): pyarrow (tests/parquet/requirements.txt) for the Parquet
# archive, and PyYAML (tests/yaml/requirements.txt), a YAML 1.1 reader, for `flags export`.
# Prints the variables those tests read:
#
#   eval "$(bash scripts/pyarrow.sh)"    # exports VEXIL_TEST_PYARROW and VEXIL_TEST_PYYAML
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PYARROW_VENV:-$root/target/pyarrow-venv}"

if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tests/parquet/requirements.txt" \
    -r "$root/tests/yaml/requirements.txt" >&2
"$venv/bin/python" -c "import pyarrow.parquet, yaml" >&2
echo "export VEXIL_TEST_PYARROW=$venv/bin/python"
echo "export VEXIL_TEST_PYYAML=$venv/bin/python"
