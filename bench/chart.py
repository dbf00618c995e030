#!/usr/bin/env python3
"""Draws a `cargo xtask bench --peers` result: added latency (p50, p99 at concurrency 1) and
proxy CPU per request (concurrency 16) for each system, side by side; and, when the result has
streams, the added time to first token (concurrency 1) and the proxy's CPU per delta
(concurrency 16). Usage: chart.py RESULT.json OUT.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
rows = results["table"]
names = [r["system"] for r in rows]
streams = all("ttft_added_p50_us" in r for r in rows)
fig, axes = plt.subplots(2 if streams else 1, 2, figsize=(11, 8.4 if streams else 4.2), squeeze=False)
x = range(len(names))


def pair(ax, p50, p99, ylabel, title):
    ax.bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], p99, 0.4, label="p99")
    ax.set_xticks(list(x), names, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()


def per_unit(ax, values, notes, ylabel, title):
    ax.bar(list(x), values, 0.5, color="tab:green")
    for i, (v, note) in enumerate(zip(values, notes)):
        ax.annotate(note, (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), names, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


pair(axes[0][0], [r["added_p50_us"] for r in rows], [r["added_p99_us"] for r in rows],
     "µs added over direct (concurrency 1)", "Added latency")
per_unit(axes[0][1], [r["cpu_us_per_request"] for r in rows], [f'{r["rps_c16"]:.0f} rps' for r in rows],
         "proxy CPU µs per request (concurrency 16)", "CPU per request")
if streams:
    pair(axes[1][0], [r["ttft_added_p50_us"] for r in rows], [r["ttft_added_p99_us"] for r in rows],
         "µs added to the first token over direct (concurrency 1)", "Stream: added time to first token")
    per_unit(axes[1][1], [r["cpu_us_per_delta"] for r in rows],
             [f'{r["streams_c16_per_s"]:.0f} streams/s' for r in rows],
             f'proxy CPU µs per delta ({results.get("deltas_per_stream", 64)}-delta streams, concurrency 16)',
             "Stream: CPU per delta")
machine = results.get("machine", {})
fig.suptitle(f'{results.get("time", "")}  {machine.get("cpu", "")}, {machine.get("cores", "?")} cores, {results.get("rounds")} interleaved rounds', fontsize=9)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
