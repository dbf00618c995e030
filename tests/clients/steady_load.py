#!/usr/bin/env python3
"""Steady captured load for the upgrade tests: THREADS threads, each opening a new connection
per request (capture happens at connect) and POSTing a chat completion to http://HOST:PORT,
until the file STOP exists. Prints one JSON line: ok and failed counts and the first errors.
A connection that went around the proxy fails: nothing listens at the provider address."""
import http.client
import json
import os
import sys
import threading

host, port, threads, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
lock = threading.Lock()
ok, failed, errors = 0, 0, []


def run():
    global ok, failed
    while not os.path.exists(stop):
        try:
            c = http.client.HTTPConnection(host, port, timeout=20)
            c.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.close()
            good = r.status == 200 and b"choices" in data
            err = None if good else f"status {r.status}: {data[:200]!r}"
        except Exception as e:  # noqa: BLE001 - reported to the test
            good, err = False, repr(e)
        with lock:
            if good:
                ok += 1
            else:
                failed += 1
                if len(errors) < 5:
                    errors.append(err)


ts = [threading.Thread(target=run) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"ok": ok, "failed": failed, "errors": errors}))
