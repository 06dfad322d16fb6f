"""The operations kit against a real `vexil serve`: runs a small load that makes every metric
family appear (evaluations, valid and invalid events, a rollout plan whose guard breaks and
rolls it back, a budget, an emergency stop, a webhook delivery), scrapes /metrics, and checks

- every metric and label that an alert, a recording rule or a dashboard panel uses is exported,
  and every recording rule a dashboard uses is defined;
- the exported metrics are exactly the inventory of docs/operations.md, with its labels;
- no label carries a user id or a raw request path (label sets stay small).

Usage: python check_metrics.py PATH_TO_VEXIL_BINARY REPOSITORY_ROOT
Prints each check, then "ops-metrics: N passed, N failed"; exits non-zero when any check failed.
"""

import glob
import http.server
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from vexil_serve import start_server  # noqa: E402

ADMIN_KEY = "vx_ops_test_admin_key_0123"
USER_PREFIX = "ops-user-"

# Labels Prometheus adds to every scraped series, and the sample suffixes of a histogram.
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def expect(self, name, problems):
        if problems:
            self.failed += 1
            print(f"FAIL {name}:")
            for problem in problems:
                print(f"       {problem}")
        else:
            self.passed += 1
            print(f"ok   {name}")


class Webhooks(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Webhooks.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def call(base, method, path, body=None):
    request = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + ADMIN_KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def eventually(what, probe, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        answer = probe()
        if answer:
            return answer
        time.sleep(0.1)
    raise SystemExit(f"{what}: not within {timeout} s")


def send_events(base, name, count):
    events = [{"event": name, "user_id": f"{USER_PREFIX}{i}", "value": 1} for i in range(count)]
    status, answer = call(base, "POST", "/v1/events", events)
    assert status == 200 and answer["accepted"] == count, (status, answer)


def small_load(base):
    """Requests that make every metric family of the service appear in /metrics."""
    flag = {"key": "new_checkout", "enabled": True, "tags": ["payments"], "default": {"split": {"on": 1}, "rollout": 50}}
    assert call(base, "POST", "/v1/admin/flags", flag)[0] == 201
    budget_flag = {"key": "ai_summaries", "enabled": True, "default": {"split": {"on": 1}, "rollout": 100}}
    assert call(base, "POST", "/v1/admin/flags", budget_flag)[0] == 201
    for user in range(50):
        call(base, "POST", "/v1/flags/new_checkout/evaluate", {"context": {"user_id": f"{USER_PREFIX}{user}"}})
        call(base, "GET", f"/v1/evaluate?flag_key=ai_summaries&user_id={USER_PREFIX}{user}")
    call(base, "POST", "/v1/flags/no_such_flag/evaluate", {"context": {"user_id": f"{USER_PREFIX}0"}})
    status, answer = call(base, "POST", "/v1/events", [{"event": "bad name!", "user_id": f"{USER_PREFIX}0"}])
    assert status == 200 and len(answer["rejected"]) == 1, (status, answer)

    # A guard that breaks: its rollback counts a break, moves the plan's state and sends a webhook.
    send_events(base, "checkout_error", 1)
    guard = {"signal": "count", "event": "checkout_error", "window": "1h", "op": "lt", "threshold": 20, "min_sample": 1}
    plan = {"steps": [{"percent": 5, "hold": "1h"}, {"percent": 100, "hold": 0}], "guards": [guard]}
    path = "/v1/admin/flags/new_checkout/rollout-plan"
    eventually("the plan accepted", lambda: call(base, "PUT", path, plan)[0] == 200)
    assert call(base, "POST", path + "/start", None)[0] == 200
    send_events(base, "checkout_error", 30)
    eventually("the guard's rollback", lambda: call(base, "GET", path)[1].get("state") == "rolled_back")

    send_events(base, "llm_cost", 1)
    budget = {"key": "summaries_daily", "event": "llm_cost", "flag": "ai_summaries", "period": "day", "limit": 100,
              "thresholds": [{"at": 100, "action": "disable"}]}
    eventually("the budget accepted", lambda: call(base, "POST", "/v1/admin/budgets", budget)[0] == 201)
    stop = {"scope": "flags", "flags": ["ai_summaries"], "reason": "operations kit check"}
    assert call(base, "POST", "/v1/admin/emergency-stop", stop)[0] == 201
    eventually("the webhook delivered", lambda: Webhooks.received)
    eventually("the budget's spend measured", lambda: "vexil_budget_remaining{" in metrics_text(base))


def metrics_text(base):
    with urllib.request.urlopen(base + "/metrics") as response:
        return response.read().decode()


def scrape(base):
    """Sample name → (label names, label values), from the Prometheus text format."""
    text = metrics_text(base)
    families = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ')
    for line in text.splitlines():
        match = sample.match(line)
        if not match:
            continue
        name, labels = match.group(1), dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        names, values = families.setdefault(name, (set(), set()))
        names.update(labels)
        values.update(labels.values())
    return families


def family(name, samples):
    """The family a sample name belongs to (a histogram's `_bucket`, `_sum` and `_count` belong to
    its base name)."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base + "_bucket" in samples and base + "_sum" in samples:
            return base
    return name


SELECTOR = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}')
MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"')
GROUPING = re.compile(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)')
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')


def references(expr):
    """The metric names, recording rule names, selector labels and grouping labels of a PromQL
    expression (Grafana variables such as $__rate_interval removed first)."""
    expr = re.sub(r'\$\{?\w+\}?', '', expr)
    selectors = [(name, MATCHER.findall(body)) for name, body in SELECTOR.findall(expr)]
    grouping = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}
    bare = STRING.sub('""', expr)
    bare = GROUPING.sub('', bare)
    bare = re.sub(r'\{[^}]*\}', '', bare)
    bare = re.sub(r'\[[^\]]*\]', '', bare)
    names = {n for n in NAME.findall(bare) if n.startswith("vexil_") or n == "up" or ":" in n}
    return names, selectors, grouping


def rule_expressions(root):
    """(where, expr) of every rule, and the recording rules by name."""
    found, records = [], {}
    for path in sorted(glob.glob(os.path.join(root, "deploy/prometheus/*.rules.yml"))):
        for group in yaml.safe_load(open(path))["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                found.append((f"{os.path.basename(path)} {name}", rule["expr"]))
                if "record" in rule:
                    records[rule["record"]] = rule["expr"]
    return found, records


def panel_expressions(root):
    found = []
    for path in sorted(glob.glob(os.path.join(root, "deploy/grafana/*.json"))):
        dashboard = json.load(open(path))
        panels = list(dashboard.get("panels", []))
        while panels:
            panel = panels.pop()
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                found.append((f"{os.path.basename(path)} «{panel.get('title')}»", target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                found.append((f"{os.path.basename(path)} variable {variable['name']}",
                              query.get("query", "") if isinstance(query, dict) else query))
    return found


def label_values_query(expr):
    """`label_values(metric, label)` of a dashboard variable, as a selector the checks read."""
    match = re.fullmatch(r'\s*label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)\s*', expr)
    return f"sum by ({match.group(2)}) ({match.group(1)})" if match else expr


def check_expression(where, expr, records, samples, problems):
    names, selectors, grouping = references(label_values_query(expr))
    metrics = set()
    for name in names:
        if ":" in name:
            if name not in records:
                problems.append(f"{where}: recording rule {name} is not defined")
                continue
            inner, _, _ = references(records[name])
            metrics |= {n for n in inner if ":" not in n}
        else:
            metrics.add(name)
    for name in metrics - {"up"}:
        if name not in samples:
            problems.append(f"{where}: {name} is not exported")
    known = set(TARGET_LABELS)
    for name in metrics & set(samples):
        known |= samples[name][0]
    for name, labels in selectors:
        if name in samples:
            missing = set(labels) - samples[name][0] - TARGET_LABELS
            if missing:
                problems.append(f"{where}: {name} has no label {', '.join(sorted(missing))}")
    missing = grouping - known
    if missing:
        problems.append(f"{where}: no metric it uses has the label {', '.join(sorted(missing))}")


def inventory(root):
    """The metric table of docs/operations.md: name → label names."""
    table = {}
    for line in open(os.path.join(root, "docs/operations.md")):
        match = re.match(r'\|\s*`(vexil_\w+)`\s*\|\s*\w+\s*\|\s*([^|]*)\|', line)
        if match:
            labels = {label.strip(" `") for label in match.group(2).split(",") if label.strip(" `—")}
            table[match.group(1)] = labels
    return table


def run_checks(base, root, checks):
    samples = scrape(base)
    # Family name → (label names, label values), a histogram's bucket bound left out.
    families = {}
    for name, (labels, values) in samples.items():
        if name.startswith("vexil_"):
            entry = families.setdefault(family(name, samples), (set(), set()))
            entry[0].update(labels - {"le"})
            entry[1].update(values)

    rules, records = rule_expressions(root)
    for where, expr in rules:
        problems = []
        check_expression(where, expr, records, samples, problems)
        checks.expect(f"rule {where} uses exported metrics and labels", problems)
    panels = panel_expressions(root)
    checks.expect("the dashboards have panels", [] if panels else ["no panel queries found under deploy/grafana"])
    for where, expr in panels:
        problems = []
        check_expression(where, expr, records, samples, problems)
        checks.expect(f"panel {where} uses exported metrics and labels", problems)

    table = inventory(root)
    problems = []
    for name, (labels, _) in sorted(families.items()):
        if name not in table:
            problems.append(f"{name} is exported but not in the inventory of docs/operations.md")
        elif table[name] != labels:
            problems.append(f"{name} has labels {sorted(labels)}, the inventory says {sorted(table[name])}")
    for name in sorted(set(table) - set(families)):
        problems.append(f"{name} is in the inventory but not exported")
    checks.expect("the exported metrics are the inventory of docs/operations.md", problems)

    problems = []
    for name, (_, values) in sorted(families.items()):
        for value in values:
            if USER_PREFIX in value or "new_checkout/" in value or "no_such_flag" in value:
                problems.append(f"{name} has the label value {value!r} (a user id, raw path or unknown flag)")
    checks.expect("no label carries a user id, a raw path or an unknown flag", problems)


def main():
    binary, root = sys.argv[1], sys.argv[2]
    checks = Checks()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhooks)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    webhook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"VEXIL_SAFETY_CHECK_INTERVAL_MS": "200", "VEXIL_WEBHOOK_URL": webhook_url}
        process, base = start_server(binary, os.path.join(data_dir, "data"), ADMIN_KEY, env)
        try:
            small_load(base)
            run_checks(base, root, checks)
        finally:
            process.terminate()
            process.wait(timeout=30)
    receiver.shutdown()
    print(f"ops-metrics: {checks.passed} passed, {checks.failed} failed")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
