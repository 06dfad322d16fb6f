"""Schemathesis against a real `vexil serve`: property-based requests for every operation of
the OpenAPI document the server itself serves (/openapi.json), once with the admin key and once
without a key. Checks every response: no 5xx, and status code, content type, headers and body
as documented.

Usage: python run_schemathesis.py PATH_TO_VEXIL_BINARY
Prints Schemathesis's own report of each run, then "schemathesis: N passed, N failed" (one
test per operation and run); exits non-zero when any failed.

Environment: SCHEMATHESIS_MAX_EXAMPLES (per operation and phase, default 100) and
SCHEMATHESIS_SEED (default 20261204) make the run larger or different.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ElementTree

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vexil_serve import start_server  # noqa: E402

ADMIN_KEY = "vx_schemathesis_admin_key_0123"
HERE = os.path.dirname(os.path.abspath(__file__))

# What exists before the run; schemathesis.toml names these keys.
SEED = [
    ("/v1/admin/segments", {"key": "beta", "when": {"attr": "beta", "op": "eq", "value": True}}),
    ("/v1/admin/flags", {"key": "new_checkout", "enabled": True,
                         "rules": [{"id": "beta", "when": {"segment": "beta"}, "serve": {"variant": "on"}}],
                         "default": {"split": {"on": 1, "off": 1}, "rollout": 10}}),
    ("/v1/admin/experiments", {"key": "checkout_redesign",
                               "variants": [{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
                               "metrics": [{"key": "purchase", "kind": "conversion", "event": "purchase",
                                            "role": "primary", "direction": "increase"}]}),
    ("/v1/admin/experiments/checkout_redesign/start", None),
    ("/v1/admin/flags/new_checkout/rollout-plan", {"steps": [{"percent": 25, "hold": "1h"}, {"percent": 100, "hold": 0}]}),
]


def create_documents(base):
    for path, body in SEED:
        method = "PUT" if path.endswith("rollout-plan") else "POST"
        request = urllib.request.Request(
            base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": "Bearer " + ADMIN_KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            response.read()

# Every check that a response can fail on its own. Left out, and why:
# - negative_data_rejection and positive_data_acceptance: the document types most admin bodies
#   as plain objects (flags, segments, experiments and plans are validated by the server against
#   SPEC 1, which JSON Schema here does not restate), so "schema-invalid" and "schema-valid"
#   inputs are not the server's notion of invalid and valid; bad input is still checked to get
#   a documented 4xx by status_code_conformance and not_a_server_error.
# - use_after_free, ensure_resource_availability: need OpenAPI links between operations.
# - ignored_auth: the second run checks every operation without a key instead.
# - missing_required_header, unsupported_method: covered by the 405 and 401 tests of the
#   Rust suite; unsupported_method sends methods the document does not list.
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])


def run(st, schema, base, name, headers, report_dir, max_examples, seed):
    junit = os.path.join(report_dir, name + ".xml")
    command = [st, "--config-file", os.path.join(HERE, "schemathesis.toml"), "run", schema, "--url", base,
               "--checks", CHECKS,
               "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(max_examples),
               "--seed", str(seed),
               "--workers", "2",
               "--generation-database", "none",
               "--suppress-health-check", "all",
               "--report", "junit", "--report-junit-path", junit,
               "--no-color"]
    for header in headers:
        command += ["--header", header]
    print(f"== schemathesis {name}: {' '.join(c if ADMIN_KEY not in c else '<admin key>' for c in command[1:])}", flush=True)
    # Its working directory is the report's: Schemathesis keeps state in ./.schemathesis.
    status = subprocess.run(command, check=False, cwd=report_dir).returncode
    passed = failed = 0
    if os.path.exists(junit):
        for case in ElementTree.parse(junit).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                print(f"FAIL {name}: {case.get('name')}")
            else:
                passed += 1
    if status != 0 and failed == 0:
        print(f"FAIL {name}: schemathesis exited with status {status}")
        failed += 1
    return passed, failed


def main():
    binary = sys.argv[1]
    st = os.path.join(os.path.dirname(sys.executable), "st")
    max_examples = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
    seed = int(os.environ.get("SCHEMATHESIS_SEED", "20261204"))
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as report_dir:
        process, base = start_server(binary, data_dir, ADMIN_KEY)
        try:
            create_documents(base)
            passed = failed = 0
            schema = base + "/openapi.json"
            for name, headers in [("with-admin-key", ["Authorization: Bearer " + ADMIN_KEY]),
                                  ("without-key", [])]:
                p, f = run(st, schema, base, name, headers, report_dir, max_examples, seed)
                passed += p
                failed += f
            if process.poll() is not None:
                print(f"FAIL the server exited with status {process.returncode} during the run")
                failed += 1
        finally:
            process.kill()
            process.wait()
    print(f"schemathesis: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
