#!/usr/bin/env python3
"""POST /v1/flags/{FLAG}/evaluate REQUESTS times over one keep-alive connection, for USERS users in
turn (user_0 .. user_{USERS-1}) with the context {"country": "US"}, one request at a time; prints
the number of 200 answers and fails on any other. For counting the server's instructions per
request (scripts/bench/callgrind-evaluate.sh), where the client's speed does not matter.

Usage: evaluate-count.py URL KEY FLAG USERS REQUESTS
"""

import http.client
import json
import sys
import urllib.parse


def main() -> int:
    url, key, flag, users, requests = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    path = f"/v1/flags/{flag}/evaluate"
    answered = 0
    for i in range(requests):
        body = json.dumps({"user_id": f"user_{i % users}", "context": {"country": "US"}})
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        text = response.read()
        if response.status != 200:
            print(f"{path}: {response.status} {text.decode(errors='replace')}", file=sys.stderr)
            return 1
        answered += 1
    print(answered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
