"""Starting a real `vexil serve` for the Python tests (tests/ofrep, tests/ops)."""

import json
import subprocess
import threading
import time


def start_server(binary, data_dir, admin_key, env=None):
    """Starts `vexil serve` on a free loopback port with `admin_key` and the extra `env`; returns
    the process and its base URL once it listens."""
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        env={"VEXIL_ADMIN_KEY": admin_key, "PATH": "/usr/bin:/bin", **(env or {})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == "listening":
            # Keep reading the log so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, "http://" + fields["address"]
    process.kill()
    raise SystemExit("vexil serve did not start")
