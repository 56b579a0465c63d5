"""exp17's strongref loop under every probe set, side by side: the numpy-domain
figures and the iterations of the collections must not depend on what is
watching. Run it with each interpreter to compare them:

    python examples/probe_sets.py [--iterations 300]

A row per probe set (each probe with the gc recorder, all of them, and a
blind run in which no sample point reads anything: the workload driven with
no probe at all, its collections counted once at the end).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.runner import execute_trial  # noqa: E402
from harness.tables import gc_events  # noqa: E402
from harness.trial import TrialSpec  # noqa: E402

PROBE_SETS = {
    "all probes": ["tracemalloc", "rss", "uss", "gc", "census", "sampled", "cycle_debt"],
    "tracemalloc + gc": ["tracemalloc", "gc"],
    "rss + gc": ["rss", "gc"],
    "census + gc": ["census", "gc"],
    "sampled + gc": ["sampled", "gc"],
    "cycle_debt + gc": ["cycle_debt", "gc"],
    "gc alone": ["gc"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    args = parser.parse_args()
    params = {"iterations": args.iterations, "size": 10_000, "depth": 3, "gc": "on", "seed": 0, "dtype": "float64"}
    print(f"Python {sys.version.split()[0]}: exp17 strongref, {args.iterations} iterations, GC on")
    print(f"{'probe set':18} {'numpy final':>12} {'numpy peak':>12}  collections (iteration: objects)")
    with tempfile.TemporaryDirectory() as scratch:
        for label, probes in [*PROBE_SETS.items(), ("blind (no probe)", [])]:
            spec = TrialSpec(trial=0, experiment="exp17", variant="strongref", params=params, repeat=0, seed=0,
                             probes=probes, blind=not probes,
                             events_path=str(Path(scratch) / f"{label.replace(' ', '_')}.jsonl"))
            outcome = execute_trial(spec, timeout_s=600, env={})
            result = outcome.result
            if probes:
                events = gc_events(outcome.samples(), result.get("gc_at_end"))
                schedule = ", ".join(f"{e['iteration']}: {e['collected']}" for e in events)
            else:
                start, end = result["gc_at_start"], result["gc_at_end"]
                done = [e - s for s, e in zip(start["collections"], end["collections"])]
                freed = [e - s for s, e in zip(start["collected"], end["collected"])]
                schedule = f"{sum(done)} collections freeing {sum(freed)} objects (iterations not seen: nothing watched)"
            print(f"{label:18} {result['numpy_bytes_at_end']:>12,} {result['numpy_bytes_peak_overall']:>12,}  "
                  f"{schedule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
