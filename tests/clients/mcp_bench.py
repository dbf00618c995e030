#!/usr/bin/env python3
"""mcp_bench.py URL N: one SDK session; 20 warm-up add(1,2) calls, then N timed
sequential calls. Prints {"n", "p50_us", "p90_us", "p99_us", "mean_us"} of the
tools/call round trips (perf_counter_ns around each call_tool).
Sends "Authorization: Bearer client-own-token"; TLS trusts SSL_CERT_FILE via the
SDK's default httpx2 client."""

import asyncio
import json
import sys
import time

from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def pct(sorted_vals, p):
    idx = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[idx]


async def run(url, n):
    async with create_mcp_http_client(headers={"Authorization": "Bearer client-own-token"}) as http:
        async with streamable_http_client(url, http_client=http) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                for _ in range(20):
                    res = await s.call_tool("add", {"a": 1, "b": 2})
                    if res.is_error:
                        raise RuntimeError(f"warm-up call failed: {res}")
                samples = []
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    res = await s.call_tool("add", {"a": 1, "b": 2})
                    samples.append(time.perf_counter_ns() - t0)
                    if res.is_error:
                        raise RuntimeError(f"call failed: {res}")
    samples.sort()
    return {
        "n": n,
        "p50_us": round(pct(samples, 50) / 1000, 1),
        "p90_us": round(pct(samples, 90) / 1000, 1),
        "p99_us": round(pct(samples, 99) / 1000, 1),
        "mean_us": round(sum(samples) / len(samples) / 1000, 1),
    }


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    try:
        out = asyncio.run(run(url, n))
    except Exception as e:  # noqa: BLE001
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        print(json.dumps({"exception": repr(e)}), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
