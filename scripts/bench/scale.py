"""Measurements of scripts/bench/scale.sh (standard library only).

generate      prints a flags file of N typical flags over M segments
writes        flag writes, then segment writes, until visible to evaluation, on a running server
wait-loaded   waits until a running server's snapshot holds N flags
restart       starts `vexil serve` on a data directory and measures start to /ready, RSS,
              first evaluations of every flag and the SDK document
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


def typical_flag(i, segments):
    """About 600 bytes: overrides, a segment rule, two targeting rules, a split default."""
    return {
        "key": f"flag_{i:05d}",
        "description": f"Scale benchmark flag {i}, owned by team {i % 40}",
        "tags": ["scale", f"team_{i % 40}"],
        "enabled": True,
        "overrides": {
            "disabled_for": [f"blocked_{i}"],
            "enabled_for": ["qa_1", "qa_2"],
            "variants": {f"beta_{i}": "on"},
        },
        "rules": [
            {"id": "internal", "when": {"segment": f"segment_{i % segments}"}, "serve": {"variant": "on"}},
            {
                "id": "us_pro",
                "when": {"all": [
                    {"attr": "country", "op": "in", "values": ["US", "CA", "GB"]},
                    {"attr": "plan", "op": "eq", "value": "pro"},
                ]},
                "serve": {"variant": "on"},
            },
            {
                "id": "new_app",
                "when": {"attr": "app_version", "op": "semver_gte", "value": f"4.{i % 10}.0"},
                "serve": {"split": {"on": 1, "off": 1}, "rollout": 50},
            },
        ],
        "default": {"split": {"on": 1, "off": 3}, "rollout": i % 100},
    }


def segment(j):
    return {
        "key": f"segment_{j}",
        "when": {"any": [
            {"attr": "email", "op": "matches", "value": f"^[a-z.]+@team{j}\\.example\\.com$"},
            {"attr": "user_id", "op": "in", "values": [f"staff_{j}_{n}" for n in range(5)]},
        ]},
    }


def request(method, url, key, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    with urllib.request.urlopen(req, timeout=120) as response:
        return response.status, response.headers, response.read()


def evaluate_one(url, key, flag, user):
    _, _, body = request("POST", f"{url}/v1/flags/{flag}/evaluate", key, {"user_id": user})
    return json.loads(body)["variant"]


def write_visible(url, key, writes):
    """Alternates one flag's default between `on` and `off` and times each PUT until an
    evaluation serves the new variant; returns the times in milliseconds."""
    _, _, body = request("GET", f"{url}/v1/admin/flags", key)
    listed = json.loads(body)
    flags = listed["flags"] if isinstance(listed, dict) else listed
    flag = dict(sorted(flags, key=lambda f: f["key"])[len(flags) // 2])
    for field in ("id", "version", "created_at", "updated_at"):
        flag.pop(field, None)
    flag["overrides"] = {}
    flag["rules"] = []
    times = []
    for n in range(writes):
        variant = "on" if n % 2 == 0 else "off"
        flag["default"] = {"variant": variant}
        start = time.perf_counter()
        request("PUT", f"{url}/v1/admin/flags/{flag['key']}", key, flag)
        while evaluate_one(url, key, flag["key"], "writer") != variant:
            pass
        times.append((time.perf_counter() - start) * 1000)
    return times


def segment_write_visible(url, key, writes):
    """Switches `segment_1`'s list of user ids to and from one holding `writer` and times each
    PUT until `flag_00001`'s rule on that segment (`internal`) decides, or stops deciding, its
    evaluation for `writer`; returns the times in milliseconds."""
    written = segment(1)
    ids = written["when"]["any"][1]
    times = []
    for n in range(writes):
        member = n % 2 == 0
        ids["values"] = [f"staff_1_{k}" for k in range(5)] + (["writer"] if member else [])
        start = time.perf_counter()
        request("PUT", f"{url}/v1/admin/segments/segment_1", key, written)
        while True:
            _, _, body = request("POST", f"{url}/v1/flags/flag_00001/evaluate", key, {"user_id": "writer"})
            if (json.loads(body).get("rule_id") == "internal") == member:
                break
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times, what):
    return (f"{what} median {statistics.median(times):.1f} ms, min {min(times):.1f}, max {max(times):.1f} "
            f"({len(times)} writes)")


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def ready(url):
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def listening_address(log_path, process):
    while process.poll() is None:
        with open(log_path) as log:
            for line in log:
                if '"listening"' in line:
                    return json.loads(line)["fields"]["address"]
        time.sleep(0.001)
    sys.exit(f"the server exited: {open(log_path).read()}")


def timed(method, url, key, body=None, headers=None):
    start = time.perf_counter()
    result = request(method, url, key, body, headers)
    return (time.perf_counter() - start) * 1000, result


def restart(args):
    log_path = os.path.join(args.data_dir, "..", "restart.log")
    command = [args.vexil, "serve", "--listen", "127.0.0.1:0", "--data-dir", args.data_dir,
               "--workers", str(args.workers), "--log-level", "warn,vexil_server::server=info"]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        url = "http://" + listening_address(log_path, process)
        while not ready(url):
            time.sleep(0.001)
        start_to_ready = (time.perf_counter() - start) * 1000
        print(f"== start to /ready: {start_to_ready:.0f} ms; RSS at ready {rss_mib(process.pid):.1f} MiB "
              f"(peak so far {rss_mib(process.pid, 'VmHWM'):.1f} MiB)")
        context = {"country": "US", "plan": "pro", "app_version": "4.5.1", "email": "a@b.example.com"}
        for n, user in enumerate(["new_user_1", "new_user_2", "new_user_2", "new_user_3"]):
            ms, (_, _, body) = timed("POST", f"{url}/v1/evaluate", args.key, {"user_id": user, "context": context})
            evaluated = len(json.loads(body)["flags"])
            label = "first" if n == 0 else "then"
            print(f"   {label} POST /v1/evaluate of all flags for {user}: {ms:.1f} ms ({evaluated} flags)")
        for headers in ({}, {"Accept-Encoding": "gzip"}):
            ms, (_, response_headers, body) = timed("GET", f"{url}/v1/sdk/flags", args.key, headers=headers)
            encoding = response_headers.get("Content-Encoding", "identity")
            print(f"== GET /v1/sdk/flags {headers or ''}: {len(body):,} bytes, Content-Encoding {encoding}, {ms:.1f} ms")
        print(f"== RSS after these requests {rss_mib(process.pid):.1f} MiB, "
              f"peak {rss_mib(process.pid, 'VmHWM'):.1f} MiB")
        print("== " + summary(write_visible(url, args.key, args.writes), f"write visible, {args.flags} flags:"))
        print("== " + summary(segment_write_visible(url, args.key, args.writes),
                              f"segment write visible, {args.flags} flags:"))
        print(f"== RSS after the writes {rss_mib(process.pid):.1f} MiB, peak {rss_mib(process.pid, 'VmHWM'):.1f} MiB")
    finally:
        process.terminate()
        process.wait()
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((l.split(":", 1)[1].strip() for l in cpuinfo if l.startswith("model name")), "?")
    print(f"== machine: {os.cpu_count()} cores, {model}; load average {os.getloadavg()[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--key")
    parser.add_argument("--writes", type=int, default=21)
    sub = parser.add_subparsers(dest="command", required=True)
    generate = sub.add_parser("generate")
    generate.add_argument("--flags", type=int, required=True)
    generate.add_argument("--segments", type=int, required=True)
    sub.add_parser("writes").add_argument("--url", required=True)
    loaded = sub.add_parser("wait-loaded")
    loaded.add_argument("--url", required=True)
    loaded.add_argument("--flags", type=int, required=True)
    again = sub.add_parser("restart")
    again.add_argument("--vexil", required=True)
    again.add_argument("--data-dir", required=True)
    again.add_argument("--workers", type=int, default=2)
    again.add_argument("--flags", type=int, required=True)
    args = parser.parse_args()

    if args.command == "generate":
        json.dump({"flags": [typical_flag(i, args.segments) for i in range(args.flags)],
                   "segments": [segment(j) for j in range(args.segments)]}, sys.stdout)
    elif args.command == "writes":
        print("   " + summary(write_visible(args.url, args.key, args.writes), "flag:"))
        print("   " + summary(segment_write_visible(args.url, args.key, args.writes), "segment:"))
    elif args.command == "wait-loaded":
        deadline = time.time() + 600
        while time.time() < deadline:
            _, _, body = request("GET", f"{args.url}/v1/sdk/flags", args.key)
            if len(json.loads(body)["flags"]) == args.flags:
                return
            time.sleep(0.5)
        sys.exit("the server did not load the imported flags within 10 minutes")
    else:
        restart(args)


if __name__ == "__main__":
    main()
