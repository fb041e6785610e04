"""Draw the partitions measure of bench-results/bench.json (written by `make bench`):
sink throughput (events per CPU-second) and peak RSS against open hour partitions.

Usage: plot_partitions.py BENCH_JSON OUT_PNG   (run by `make bench-plot` in .bed/venv)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    with open(src) as f:
        runs = json.load(f).get("partitions") or []
    if not runs:
        sys.exit(f"{src} has no partitions measure: run `make bench` first")
    hours = [r["hours"] for r in runs]
    eps = [r["events_per_cpu_second"] for r in runs]
    rss = [r["peak_rss_mib"] for r in runs]
    budget = runs[0]["budget_mib"]

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(hours, eps, "o-", color="tab:blue", label="measured")
    a.axhline(0.9 * eps[0], color="tab:gray", ls="--", label=f"90 % of {hours[0]} partitions")
    a.set_xscale("log")
    a.set_ylim(bottom=0)
    a.set_xlabel("open hour partitions")
    a.set_ylabel("events per CPU-second")
    a.set_title("sink throughput")
    a.legend(loc="lower left")
    for x, y in zip(hours, eps):
        a.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)

    b.plot(hours, rss, "o-", color="tab:red", label="peak RSS (VmHWM)")
    b.axhline(budget, color="tab:green", ls=":", label=f"memory budget {budget} MiB")
    b.axhline(budget + 64, color="tab:gray", ls="--", label="target: budget + 64 MiB")
    b.set_xscale("log")
    b.set_ylim(bottom=0, top=max(max(rss), budget + 64) * 1.15)
    b.set_xlabel("open hour partitions")
    b.set_ylabel("MiB")
    b.set_title("sink peak RSS")
    b.legend(loc="lower left")
    for x, y in zip(hours, rss):
        b.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)

    fig.suptitle(f"lakesink sink, {runs[0]['events']:,} events per run, budget {budget} MiB, 2 cores")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
