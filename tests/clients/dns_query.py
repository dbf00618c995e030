"""Asks a DNS server for a name's A records the way musl and many resolvers do: sendto() on an
unconnected UDP socket, then recvfrom(). Prints one JSON line: where the answer came from (as
the socket shows it), the answer's bytes (hex) and its addresses.

usage: dns_query.py SERVER NAME [--tcp]
"""

import json
import socket
import struct
import sys


def query(name: str) -> bytes:
    q = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00\x00\x01\x00\x01"


def addresses(answer: bytes) -> list:
    """The A records of a plain answer (names compressed or not)."""
    try:
        qd, an = struct.unpack(">HH", answer[4:8])
        i = 12

        def skip_name(i):
            while True:
                n = answer[i]
                if n == 0:
                    return i + 1
                if n & 0xC0 == 0xC0:
                    return i + 2
                i += n + 1

        for _ in range(qd):
            i = skip_name(i) + 4
        out = []
        for _ in range(an):
            i = skip_name(i)
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", answer[i : i + 10])
            i += 10
            if rtype == 1 and rdlen == 4:
                out.append(socket.inet_ntoa(answer[i : i + 4]))
            i += rdlen
        return out
    except (IndexError, struct.error):
        return []


def main() -> None:
    server, name = sys.argv[1], sys.argv[2]
    q = query(name)
    if "--tcp" in sys.argv:
        s = socket.create_connection((server, 53), timeout=5)
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]
        answer = s.recv(n, socket.MSG_WAITALL)
        source = s.getpeername()
    else:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(q, (server, 53))
        answer, source = s.recvfrom(65535)
    print(json.dumps({"from": [source[0], source[1]], "hex": answer.hex(), "addresses": addresses(answer)}))


main()
