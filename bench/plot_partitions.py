"""Draw the partitions measure of bench-results/bench.json (written by `make bench`):
sink throughput (events per CPU-second) and peak RSS against open hour partitions.

Usage: plot_partitions.py BENCH_JSON OUT_PNG   (run by `make bench-plot` in .bed/venv)
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def panel(ax, xs, ys, color, label, ylabel, title, fmt, lines, top):
    """One measure against open partitions (log x), with reference lines and value labels."""
    ax.plot(xs, ys, "o-", color=color, label=label)
    for y, c, ls, text in lines:
        ax.axhline(y, color=c, ls=ls, label=text)
    ax.set_xscale("log")
    ax.set_ylim(bottom=0, top=top)
    ax.set_xlabel("open hour partitions")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower left")
    for x, y in zip(xs, ys):
        ax.annotate(fmt.format(y), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)


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
    panel(a, hours, eps, "tab:blue", "measured", "events per CPU-second", "sink throughput", "{:,.0f}",
          [(0.9 * eps[0], "tab:gray", "--", f"90 % of {hours[0]} partitions")], top=None)
    panel(b, hours, rss, "tab:red", "peak RSS (VmHWM)", "MiB", "sink peak RSS", "{:.0f}",
          [(budget, "tab:green", ":", f"memory budget {budget} MiB"),
           (budget + 64, "tab:gray", "--", "target: budget + 64 MiB")],
          top=max(max(rss), budget + 64) * 1.15)

    fig.suptitle(f"lakesink sink, {runs[0]['events']:,} events per run, budget {budget} MiB, 2 cores")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
