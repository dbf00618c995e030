#!/usr/bin/env python3
"""N concurrent chat completions (one thread and TLS connection each, released together by a
barrier) to https://HOST/v1/chat/completions, trusting CAFILE. Prints one JSON line: every
status, every Retry-After, and one denied body."""
import http.client
import json
import ssl
import sys
import threading

ca, host, n, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
barrier = threading.Barrier(n)
results = [None] * n


def one(i):
    try:
        c = http.client.HTTPSConnection(host, context=ctx, timeout=30)
        c.connect()
        barrier.wait()
        c.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        results[i] = {"status": r.status, "retry_after": r.getheader("retry-after"), "body": r.read().decode()}
    except Exception as e:  # noqa: BLE001 - reported to the test
        results[i] = {"status": 0, "error": str(e)}


threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
denied = [r for r in results if r["status"] == 429]
print(json.dumps({
    "statuses": [r["status"] for r in results],
    "retry_after": [r.get("retry_after") for r in denied],
    "denied_body": denied[0]["body"] if denied else None,
    "errors": [r.get("error") for r in results if r.get("error")][:3],
}))
