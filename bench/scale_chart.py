#!/usr/bin/env python3
"""Draws a `cargo xtask bench --scale` result: RSS idle and with N open streams (Tollgate,
nginx), and one panel per growth dimension (routes, endpoint map entries, cgroups, limit
buckets): added p50 at concurrency 1 and proxy CPU per request at concurrency 16 against the
size, log scale. Usage: scale_chart.py RESULT.json OUT.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
memory = results.get("memory") or {}
growth = results.get("growth") or {}
panels = (1 if memory else 0) + len(growth)
fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.2 * max(panels, 1), 4.2), squeeze=False)
axes = list(axes[0])

if memory:
    ax = axes.pop(0)
    systems = memory["systems"]
    names = list(systems)
    x = range(len(names))
    idle = [systems[n]["rss_idle_kib"] / 1024 for n in names]
    open_ = [systems[n]["rss_open_kib"] / 1024 for n in names]
    ax.bar([i - 0.2 for i in x], idle, 0.4, label="idle")
    ax.bar([i + 0.2 for i in x], open_, 0.4, label=f'{memory["connections"]:,} open streams')
    for i, n in enumerate(names):
        ax.annotate(f'{systems[n]["bytes_per_connection"] / 1024:.1f} KiB/conn', (i + 0.2, open_[i]),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("proxy RSS, MiB")
    ax.set_title("Memory")
    ax.legend(fontsize=8)

titles = {"routes": "Routes (the match is last)", "endpoints": "Endpoint map entries",
          "cgroups": "Workloads (cgroups seen)", "limits": "Limit buckets"}
for dim, points in growth.items():
    ax = axes.pop(0)
    sizes = [p["size"] for p in points]
    ax.plot(sizes, [p["added_p50_us"] for p in points], "o-", color="tab:blue", label="added p50 µs (c=1)")
    ax.set_xscale("log")
    ax.set_xlabel("size")
    ax.set_ylabel("µs added over direct (p50, c=1)", color="tab:blue")
    ax.set_ylim(bottom=0)
    cpu = ax.twinx()
    cpu.plot(sizes, [p["cpu_us_per_request"] for p in points], "s--", color="tab:green", label="CPU µs/request (c=16)")
    cpu.set_ylabel("proxy CPU µs per request (c=16)", color="tab:green")
    cpu.set_ylim(bottom=0)
    ax.set_title(titles.get(dim, dim))

machine = results.get("machine", {})
fig.suptitle(f'{results.get("time", "")}  {machine.get("cpu", "")}, {machine.get("cores", "?")} cores; median of {results.get("rounds")} per point', fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
