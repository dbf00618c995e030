#!/usr/bin/env python3
"""Draws a `cargo xtask bench --peers` result: added latency (p50, p99 at concurrency 1) and
proxy CPU per request (concurrency 16) for each system, side by side. Usage: chart.py RESULT.json OUT.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
rows = results["table"]
names = [r["system"] for r in rows]
fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
x = range(len(names))
lat.bar([i - 0.2 for i in x], [r["added_p50_us"] for r in rows], 0.4, label="p50")
lat.bar([i + 0.2 for i in x], [r["added_p99_us"] for r in rows], 0.4, label="p99")
lat.set_xticks(list(x), names, rotation=20)
lat.set_ylabel("µs added over direct (concurrency 1)")
lat.set_title("Added latency")
lat.legend()
cpu.bar(list(x), [r["cpu_us_per_request"] for r in rows], 0.5, color="tab:green")
for i, r in enumerate(rows):
    cpu.annotate(f'{r["rps_c16"]:.0f} rps', (i, r["cpu_us_per_request"]), ha="center", va="bottom", fontsize=8)
cpu.set_xticks(list(x), names, rotation=20)
cpu.set_ylabel("proxy CPU µs per request (concurrency 16)")
cpu.set_title("CPU per request")
machine = results.get("machine", {})
fig.suptitle(f'{results.get("time", "")}  {machine.get("cpu", "")}, {machine.get("cores", "?")} cores, {results.get("rounds")} interleaved rounds', fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
