"""An unmodified OpenFeature client (the published Python SDK and OFREP provider) against a
real `vexil serve`: boolean, string, number and object flags resolve with the expected values,
variants and reasons; FLAG_NOT_FOUND and TARGETING_KEY_MISSING behave as OpenFeature says.

Usage: python test_ofrep.py PATH_TO_VEXIL_BINARY
Prints each check, then "ofrep: N passed, N failed"; exits non-zero when any check failed.
"""

import json
import os
import sys
import tempfile
import urllib.request

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.contrib.provider.ofrep import OFREPProvider

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vexil_serve import start_server  # noqa: E402

ADMIN_KEY = "vx_ofrep_test_admin_key_0123"

FLAGS = [
    {"key": "new_checkout", "enabled": True,
     "rules": [{"id": "us", "when": {"attr": "country", "op": "eq", "value": "US"}, "serve": {"variant": "on"}}],
     "default": {"variant": "off"}},
    {"key": "banner_color", "type": "string", "enabled": True,
     "variants": {"red": "#ff0000", "blue": "#0000ff"}, "off_variant": "red", "default": {"variant": "blue"}},
    {"key": "max_items", "type": "number", "enabled": True,
     "variants": {"small": 10, "large": 50}, "off_variant": "small",
     "overrides": {"variants": {"vip": "large"}}, "default": {"variant": "small"}},
    {"key": "discount", "type": "number", "enabled": True,
     "variants": {"none": 0.0, "some": 0.15}, "off_variant": "none", "default": {"split": {"some": 1}, "rollout": 100}},
    {"key": "layout", "type": "json", "enabled": False,
     "variants": {"classic": {"columns": 2}, "wide": {"columns": 4}}, "off_variant": "classic",
     "default": {"variant": "wide"}},
]


def admin(base, method, path, body=None):
    request = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + ADMIN_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def expect(self, name, actual, expected):
        if actual == expected:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}: expected {expected!r}, got {actual!r}")


def run_checks(base, client_key, checks):
    api.set_provider(OFREPProvider(base_url=base, headers_factory=lambda: {"Authorization": f"Bearer {client_key}"}))
    client = api.get_client()
    us = EvaluationContext(targeting_key="user_1", attributes={"country": "US"})
    fr = EvaluationContext(targeting_key="user_1", attributes={"country": "FR"})

    details = client.get_boolean_details("new_checkout", False, us)
    checks.expect("boolean rule match", (details.value, details.variant, details.reason), (True, "on", Reason.TARGETING_MATCH))
    checks.expect("native reason in metadata", details.flag_metadata.get("reason"), "TARGETING_MATCH")
    details = client.get_boolean_details("new_checkout", True, fr)
    checks.expect("boolean default", (details.value, details.variant, details.reason), (False, "off", Reason.DEFAULT))

    details = client.get_string_details("banner_color", "none", fr)
    checks.expect("string static", (details.value, details.variant, details.reason), ("#0000ff", "blue", Reason.STATIC))

    details = client.get_integer_details("max_items", 1, EvaluationContext(targeting_key="vip"))
    checks.expect("integer override", (details.value, details.variant, details.reason), (50, "large", Reason.TARGETING_MATCH))
    checks.expect("override's native reason", details.flag_metadata.get("reason"), "OVERRIDE")
    details = client.get_float_details("discount", 0.0, fr)
    checks.expect("float split", (details.value, details.variant, details.reason), (0.15, "some", Reason.SPLIT))

    details = client.get_object_details("layout", {}, fr)
    checks.expect("object disabled", (details.value, details.variant, details.reason), ({"columns": 2}, "classic", Reason.DISABLED))

    details = client.get_boolean_details("no_such_flag", True, us)
    checks.expect("unknown flag gives the default", (details.value, details.error_code, details.reason), (True, ErrorCode.FLAG_NOT_FOUND, Reason.ERROR))

    details = client.get_boolean_details("new_checkout", False, EvaluationContext(attributes={"country": "US"}))
    checks.expect("missing targeting key gives the default", (details.value, details.error_code), (False, ErrorCode.TARGETING_KEY_MISSING))

    details = client.get_string_details("new_checkout", "fallback", us)
    checks.expect("type mismatch gives the default", (details.value, details.error_code), ("fallback", ErrorCode.TYPE_MISMATCH))


def main():
    binary = sys.argv[1]
    checks = Checks()
    with tempfile.TemporaryDirectory() as data_dir:
        process, base = start_server(binary, data_dir, ADMIN_KEY)
        try:
            for flag in FLAGS:
                admin(base, "POST", "/v1/admin/flags", flag)
            client_key = admin(base, "POST", "/v1/admin/keys", {"kind": "client", "name": "ofrep test"})["key"]
            run_checks(base, client_key, checks)
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(f"ofrep: {checks.passed} passed, {checks.failed} failed")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
