#!/usr/bin/env python3
"""A client that goes away at a chosen moment of a chat completion request, over TLS (trusting
the CA in SSL_CERT_FILE) or plaintext. It knows nothing about Tollgate.

    hangup.py PHASE HOST PORT [--plain]

PHASE:
  upload   send the headers and half of the body, then close
  headers  send the whole request, wait one second for an answer, then close
  stream   send a streaming request, read until the first event, then close
  trickle  send the request line and headers one byte every 0.3 s; report when the server
           closed the connection (seconds) or that it never did within 20 s

Prints one JSON line: {"phase": ..., "closed_after_s": ..., "got": first bytes seen}.
"""
import json
import socket
import ssl
import sys
import time

BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 1000,
                   "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = json.dumps({"model": "gpt-4o-mini", "stream": True,
                          "messages": [{"role": "user", "content": "hi"}]})


def connect(host, port, plain):
    s = socket.create_connection((host, port), timeout=20)
    if plain:
        return s
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx.wrap_socket(s, server_hostname=host)


def head(host, body, length=None):
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer sk-dummy\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length if length is not None else len(body)}\r\n\r\n").encode()


def main():
    phase, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    plain = "--plain" in sys.argv
    s = connect(host, port, plain)
    got = b""
    closed_after = None
    if phase == "upload":
        s.sendall(head(host, BODY) + BODY[: len(BODY) // 2].encode())
        time.sleep(0.5)
    elif phase == "headers":
        s.sendall(head(host, BODY) + BODY.encode())
        s.settimeout(1)
        try:
            got = s.recv(100)
        except (socket.timeout, ssl.SSLError):
            pass
    elif phase == "stream":
        s.sendall(head(host, STREAM_BODY) + STREAM_BODY.encode())
        while b"data:" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    elif phase == "trickle":
        data = head(host, BODY)
        started = time.monotonic()
        try:
            for b in data:
                s.sendall(bytes([b]))
                time.sleep(0.3)
                if time.monotonic() - started > 20:
                    break
            s.settimeout(20 - min(20, time.monotonic() - started))
            got = s.recv(100)
        except (OSError, ssl.SSLError):
            pass
        closed_after = round(time.monotonic() - started, 2)
    s.close()
    print(json.dumps({"phase": phase, "closed_after_s": closed_after,
                      "got": got[:60].decode("latin-1")}))


if __name__ == "__main__":
    main()
