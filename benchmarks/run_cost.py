"""What a run costs beside its workload: `python benchmarks/run_cost.py [--repeats 5]`.

Times, as fresh processes taking turns (interleaved, so a change of the
machine's load falls on every command alike), each command below, and
prints the median, the spread (min-max and IQR) and the ratio of medians to
the floor: the imports any plotting run needs
(`python -c "import pandas, matplotlib.figure, matplotlib.backends.backend_agg"`).
The machine's load average is printed before and after: on a shared machine
read the ratios, not the seconds.

The target: `harness run exp17` with defaults (all default probes,
plots, report) within 2x the floor. `--cold-trials` is the same run with
each trial a new interpreter instead of a fork of the run's pre-imported
server (harness/fork_server.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = "imports (floor)"


def commands(out: str) -> dict[str, list[str]]:
    py = sys.executable
    return {
        FLOOR: [py, "-c", "import pandas, matplotlib.figure, matplotlib.backends.backend_agg"],
        "python -c pass": [py, "-c", "pass"],
        "harness --help": [py, "-m", "harness", "--help"],
        "harness list": [py, "-m", "harness", "list"],
        "trial imports": [py, "-c", "import harness.trial"],
        "run exp17 --no-plots": [py, "-m", "harness", "run", "exp17", "--no-plots", "--quiet", "--out", out],
        "run exp17 --cold-trials": [py, "-m", "harness", "run", "exp17", "--cold-trials", "--quiet", "--out", out],
        "run exp17 (defaults)": [py, "-m", "harness", "run", "exp17", "--quiet", "--out", out],
    }


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as out:
        todo = commands(out)
        for command in todo.values():  # warm the page cache and __pycache__
            timed(command)
        times: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(args.repeats):
            for name, command in todo.items():
                times[name].append(timed(command))
    floor = statistics.median(times[FLOOR])
    print(f"{'command':26} {'median s':>9} {'min-max s':>13} {'IQR s':>7} {'x floor':>8}")
    for name, values in times.items():
        q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
        print(f"{name:26} {statistics.median(values):9.3f} {min(values):6.3f}-{max(values):6.3f} "
              f"{q[2] - q[0]:7.3f} {statistics.median(values) / floor:8.2f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
