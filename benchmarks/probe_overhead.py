"""What the probes cost a workload: `python benchmarks/probe_overhead.py [--repeats 3] [--sizes 1e4 1e6]`.

For exp17's weakref loop at each size, each trial times its workload with no
probe, with every default probe, and with each probe alone, in 7 interleaved
rounds (`harness run --overhead`, harness/trial.py), and reports the median
of the per-round ratios to no probe and their interquartile range. Several
trials (`--repeats`) give the spread between processes as well; the table
prints, per probe, the median over trials of those medians, the smallest and
largest, and the median IQR. The load average before and after says how
quiet the machine was.

The targets: all default probes together at most 1.10x the bare
workload at exp17's default size (1e4) and 1.03x at 1e6.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402
from harness.probes import DEFAULT_PROBES  # noqa: E402

TARGETS = {10_000: 1.10, 1_000_000: 1.03}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="trials per size (fresh processes)")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e6])
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; default probes: {', '.join(DEFAULT_PROBES)}")
    with tempfile.TemporaryDirectory() as out:
        run = harness.run("exp17", variants=["weakref"], params={"size": sizes}, repeats=args.repeats,
                          measure_overhead=True, plots=False, progress=False, out=out)
    summary = run.summary
    columns = ["overhead_all_probes"] + [f"overhead_{p}" for p in DEFAULT_PROBES]
    print(f"{'size':>9} {'probes':18} {'median x':>9} {'min-max x':>13} {'median IQR':>10} {'target':>7}")
    for size in sizes:
        rows = summary[summary["size"] == size]
        for column in columns:
            if column not in rows or rows[column].isna().all():
                continue
            values = rows[column].dropna().astype(float).tolist()
            iqr = rows.get(f"{column}_iqr", rows[column] * 0).dropna().astype(float).tolist()
            name = "all default" if column == "overhead_all_probes" else column.removeprefix("overhead_")
            target = f"{TARGETS[size]:.2f}" if column == "overhead_all_probes" and size in TARGETS else ""
            print(f"{size:>9,} {name:18} {statistics.median(values):9.3f} "
                  f"{min(values):6.3f}-{max(values):6.3f} {statistics.median(iqr) if iqr else float('nan'):10.3f} "
                  f"{target:>7}")
        bare = rows["bare_workload_seconds"].dropna().astype(float)
        if len(bare):
            print(f"{size:>9,} {'(bare workload)':18} {statistics.median(bare) * 1e3:8.2f} ms")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
