#!/usr/bin/env python3
"""A small, unmodified-by-Tollgate TCP client used by the end-to-end tests.

It knows nothing about Tollgate: it connects where it is told and reports, as one JSON line,
what it saw (its own address, the peer address getpeername() returned, the reply), or the errno
when connect() failed.

    tcp_client.py connect HOST PORT [PAYLOAD]   one connection, send PAYLOAD, read until EOF
    tcp_client.py echo-many HOST PORT N         N concurrent connections, each checks its echo
"""
import asyncio
import json
import socket
import sys


def connect(host, port, payload):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect((host, port))
    except OSError as e:
        print(json.dumps({"ok": False, "errno": e.errno, "error": str(e)}))
        return
    sock = s.getsockname()
    peer = s.getpeername()
    s.sendall(payload.encode())
    s.shutdown(socket.SHUT_WR)
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    s.close()
    print(json.dumps({
        "ok": True,
        "sock": [sock[0], sock[1]],
        "peer": [peer[0], peer[1]],
        "reply": b"".join(chunks).decode(errors="replace"),
    }))


async def one_echo(host, port, i):
    reader, writer = await asyncio.open_connection(host, port)
    payload = f"payload-{i}-".encode() * 64
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    got = await reader.read()
    writer.close()
    return got == payload


async def echo_many(host, port, n):
    results = await asyncio.gather(*(one_echo(host, port, i) for i in range(n)), return_exceptions=True)
    good = sum(1 for r in results if r is True)
    errors = [str(r) for r in results if isinstance(r, Exception)][:5]
    print(json.dumps({"ok": good == n, "good": good, "n": n, "errors": errors}))


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "connect":
        connect(host, port, sys.argv[4] if len(sys.argv) > 4 else "hello")
    elif mode == "echo-many":
        asyncio.run(echo_many(host, port, int(sys.argv[4])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
