"""Forward + backward time of this engine against the official DeZero, PyTorch (CPU)
and a raw-numpy floor.

    python benchmarks/engine_speed.py [--repeats N] [--budget SECONDS] [--only WORKLOAD ...]

Workloads (each timed as forward and backward together, one call per
repeat, timeit-style with the cyclic GC off while timing; the engines take
turns, so every engine sees the same machine load):

  chain   a 2,000-step chain `y = y * x + x` on 0-d float64 arrays
          (per-op overhead of a deep graph);
  tree    a binary sum tree over 2,000 leaves: `xi * xi`, then pairwise add
          until one root (a wide graph: the official DeZero sorts its
          candidate list on every insert, quadratic in the width);
  squares ten iterations of `square(square(square(x)))` plus backward on
          1,000,000-element float64 arrays (numpy-bound; the seeds' loop).

Engines: ours (the default engine, step 18-22 configuration), the official
DeZero 0.0.13 (`dezero/core_simple.py` loaded on its own: the package's
__init__ fails on numpy 2, which removed `np.int`), PyTorch 2.13.0 CPU with
one thread, and "numpy": the same workload written as bare numpy calls with
a hand-made tape, making exactly the numpy calls our engine makes (the
graph's values kept as 0-d arrays, as a Variable's data is) and nothing
else -- the floor for any engine over numpy with DeZero's semantics. The
optional engines come from `pip install -e .[compare]`; a missing one is
reported and skipped.

Reported per engine: the minimum (the least-disturbed run), the median and
the interquartile range over the repeats; ratios are taken min to min and
median to median. The load average is printed at the start and the end:
on a shared machine, a run whose load moved is worth repeating.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import os
import platform
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import engine  # noqa: E402

INSTALL_HINT = "pip install -e .[compare]   (pins torch==2.13.0 and dezero==0.0.13)"
CHAIN_STEPS = 2_000
TREE_LEAVES = 2_000
SQUARES_SIZE = 1_000_000
SQUARES_ITERATIONS = 10


# --- engines -----------------------------------------------------------------------
# Each engine is a namespace of: var(ndarray) -> leaf, mul, add, square,
# backward(y) (seeded with ones like y), grad(x) -> ndarray.


def dezero_style(module: ModuleType) -> SimpleNamespace:
    return SimpleNamespace(
        var=module.Variable,
        mul=module.mul,
        add=module.add,
        square=module.square,
        backward=lambda y: y.backward(),
        grad=lambda x: np.asarray(x.grad),
    )


def load_official_dezero() -> tuple[ModuleType | None, str]:
    """The official core_simple.py, loaded by file path as the harness's
    `dezero_official` variant loads it (its package __init__ fails on numpy 2)."""
    from engine.adapters.dezero_official import core_simple_path, load_core_simple

    path = core_simple_path()
    if path is None:
        return None, "official DeZero is not installed"
    return load_core_simple(), f"dezero {dezero_version()} ({path})"


def dezero_version() -> str:
    try:
        return importlib.metadata.version("dezero")
    except importlib.metadata.PackageNotFoundError:  # e.g. a source checkout on sys.path
        return "(unknown version)"


def load_torch() -> tuple[SimpleNamespace | None, str]:
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    torch.set_num_threads(1)

    def var(array: np.ndarray):
        return torch.from_numpy(array).requires_grad_(True)

    def backward(y):
        y.backward(torch.ones_like(y))

    ops = SimpleNamespace(
        var=var,
        mul=torch.mul,
        add=torch.add,
        square=torch.square,
        backward=backward,
        grad=lambda x: x.grad.numpy(),
    )
    return ops, f"torch {torch.__version__}, {torch.get_num_threads()} thread"


# --- workloads -------------------------------------------------------------------------


def chain(ops: SimpleNamespace) -> Any:
    x = ops.var(np.array(0.5))
    y = x
    for _ in range(CHAIN_STEPS):
        y = ops.add(ops.mul(y, x), x)
    ops.backward(y)
    return x


def tree(ops: SimpleNamespace, leaves: list[np.ndarray]) -> Any:
    xs = [ops.var(a) for a in leaves]
    level = [ops.mul(x, x) for x in xs]
    while len(level) > 1:
        paired = [ops.add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    ops.backward(level[0])
    return xs


def squares(ops: SimpleNamespace, array: np.ndarray) -> Any:
    for _ in range(SQUARES_ITERATIONS):
        x = ops.var(array)
        y = ops.square(ops.square(ops.square(x)))
        ops.backward(y)
    return x


# --- the raw-numpy floor ------------------------------------------------------------------
# Each computes the workload's grads with the numpy calls our engine makes
# (forward ops, each backward's products, the grad accumulations; no more)
# and a minimal tape, and returns them as the workload's `check` would. The
# values of the graph are 0-d arrays, as a Variable's data is: numpy returns
# a scalar from an op on 0-d arrays, and the engine, as any DeZero, makes it
# an array again (`np.array`, here too). The grads stay what numpy returns.


def chain_numpy() -> np.ndarray:
    x = np.array(0.5)
    tape = []  # each step's input y, which the product's backward reads
    y = x
    for _ in range(CHAIN_STEPS):
        tape.append(y)
        y = np.array(np.array(y * x) + x)
    gy = np.ones_like(y)
    gx = None
    for yk in reversed(tape):
        gx = gy if gx is None else gx + gy  # add: y' = t + x
        gx = gx + gy * yk  # mul: t = y * x
        gy = gy * x
    return np.asarray(gx + gy)  # y0 is x itself


def tree_numpy(leaves: list[np.ndarray]) -> np.ndarray:
    level = [np.array(x * x) for x in leaves]
    widths = []  # the tape: an add node's inputs are its level's pairs
    while len(level) > 1:
        widths.append(len(level))
        paired = [np.array(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    grads = [np.ones_like(level[0])]
    for width in reversed(widths):  # an add passes its grad to both inputs unchanged
        below = [g for g in grads[: width // 2] for _ in (0, 1)]
        if width % 2:
            below.append(grads[-1])
        grads = below
    return np.array([g * x + g * x for g, x in zip(grads, leaves)])  # mul's two grads, accumulated


def squares_numpy(array: np.ndarray) -> np.ndarray:
    tape = None
    for _ in range(SQUARES_ITERATIONS):
        new = [array]
        for _ in range(3):
            new.append(new[-1] ** 2)
        tape = new  # the previous graph and its grad go here, after the new forward, as in the engines
        gy = np.ones_like(tape[-1])
        for x in reversed(tape[:-1]):
            gy = 2 * x * gy  # the previous grad is freed as each is made, as freeing intermediate grads does
        tape.append(gy)  # the leaf's grad lives with its graph
    return np.asarray(gy)


@dataclass
class Workload:
    name: str
    description: str
    run: Callable[[SimpleNamespace], Any]
    check: Callable[[Any], np.ndarray]  # what must agree across engines
    floor: Callable[[], np.ndarray]  # the raw-numpy version; returns what `check` does


def workloads() -> list[Workload]:
    rng = np.random.default_rng(0)
    leaves = [np.array(v) for v in rng.uniform(-1, 1, TREE_LEAVES)]
    big = rng.uniform(-1, 1, SQUARES_SIZE)
    return [
        Workload(
            "chain",
            f"{CHAIN_STEPS:,}-step chain y = y*x + x, 0-d",
            chain,
            lambda x: np.asarray(_grad(x)),
            chain_numpy,
        ),
        Workload(
            "tree",
            f"sum tree over {TREE_LEAVES:,} leaves of x*x",
            lambda ops: tree(ops, leaves),
            lambda xs: np.array([_grad(x) for x in xs]),
            lambda: tree_numpy(leaves),
        ),
        Workload(
            "squares",
            f"{SQUARES_ITERATIONS} x three squares, {SQUARES_SIZE:,} elements",
            lambda ops: squares(ops, big),
            lambda x: np.asarray(_grad(x)),
            lambda: squares_numpy(big),
        ),
    ]


def _grad(x: Any) -> np.ndarray:
    grad = x.grad
    return grad.numpy() if hasattr(grad, "numpy") else np.asarray(grad)


# --- timing --------------------------------------------------------------------------------


def interleaved_times(fns: dict[str, Callable[[], Any]], repeats: int, budget: float) -> dict[str, list[float]]:
    """`repeats` single calls per engine, timed round-robin.

    Each round runs every engine once, starting with a different engine each
    round, so no engine always runs first (cold allocator, caches) or right
    after another engine's big frees. An engine that has spent `budget`
    seconds stops after at least 5 calls.
    """
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}  # timeit turns the GC off while timing
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(repeats):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            if len(times[name]) >= 5 and sum(times[name]) > budget:
                continue
            times[name].append(timers[name].timeit(number=1))
            gc.collect()
    return times


@dataclass
class Spread:
    min: float
    median: float
    iqr: float
    n: int

    @classmethod
    def of(cls, times: list[float]) -> "Spread":
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        return cls(min(times), float(median), float(q3 - q1), len(times))


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} CPUs)"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


ENGINE_COLUMNS = ("ours", "official", "torch", "numpy")
RATIOS = (("official", "ours"), ("torch", "ours"), ("ours", "numpy"))  # (numerator, denominator)


def print_table(rows: list[tuple[Workload, dict[str, Spread]]]) -> None:
    ratio_names = [f"{a}/{b}" for a, b in RATIOS]
    header = f"{'workload':<9} {'ms':<7}" + "".join(f"{name:>10}" for name in ENGINE_COLUMNS)
    header += "".join(f"{name:>14}" for name in ratio_names)
    print(header)
    print("-" * len(header))
    for workload, spreads in rows:
        for stat in ("min", "median", "iqr"):
            label = workload.name if stat == "min" else ""
            line = f"{label:<9} {stat:<7}"
            for name in ENGINE_COLUMNS:
                line += f"{getattr(spreads[name], stat) * 1e3:>10.1f}" if name in spreads else f"{'-':>10}"
            for a, b in RATIOS:
                if stat == "iqr" or a not in spreads or b not in spreads:
                    line += f"{'':>14}"
                else:
                    line += f"{getattr(spreads[a], stat) / getattr(spreads[b], stat):>13.2f}x"
            print(line)


def print_targets(spreads: dict[str, dict[str, Spread]]) -> None:
    """The speed targets, judged on the minimum and on the median."""
    targets = [
        ("chain", "ours <= 0.8x torch", "ours", "torch", lambda r: r <= 0.8),
        ("chain", "ours <= 3x the numpy floor", "ours", "numpy", lambda r: r <= 3.0),
        ("tree", "official >= 10x ours", "official", "ours", lambda r: r >= 10.0),
        ("squares", "ours <= 1.05x the numpy floor", "ours", "numpy", lambda r: r <= 1.05),
    ]
    print("targets (ratio of mins; of medians):")
    for workload, what, a, b, ok in targets:
        s = spreads.get(workload, {})
        if a not in s or b not in s:
            continue
        by_min, by_median = s[a].min / s[b].min, s[a].median / s[b].median
        verdict = "met" if ok(by_min) and ok(by_median) else ("met by min only" if ok(by_min) else "NOT met")
        print(f"  {workload:<8} {what:<30} {by_min:6.2f}x  {by_median:6.2f}x   {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per engine and workload")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per engine and workload before fewer repeats")
    parser.add_argument("--only", nargs="+", metavar="WORKLOAD", help="run only these workloads")
    args = parser.parse_args(argv)

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()} {platform.system()}, {cpu_name()}")
    print(f"load average at start: {load()}")
    engines: dict[str, SimpleNamespace] = {"ours": dezero_style(engine)}
    print("ours: engine (default configuration: weakref outputs, intermediate grads freed)")

    official, note = load_official_dezero()
    if official is None:
        print(f"MISSING official DeZero: {note}; install with: {INSTALL_HINT}")
    else:
        engines["official"] = dezero_style(official)
        print(f"official: {note}")
        if dezero_version() != "0.0.13":
            print(f"  warning: the comparison is pinned to dezero 0.0.13; {INSTALL_HINT}")

    torch_ops, note = load_torch()
    if torch_ops is None:
        print(f"MISSING PyTorch: {note}; install with: {INSTALL_HINT}")
    else:
        engines["torch"] = torch_ops
        print(f"torch: {note}")
        if not note.startswith("torch 2.13.0"):
            print(f"  warning: the comparison is pinned to torch 2.13.0 (CPU); {INSTALL_HINT}")
    print("numpy: the workload as bare numpy calls with a hand-made tape (the floor)")
    print()

    rows = []
    for workload in workloads():
        if args.only and workload.name not in args.only:
            continue
        # one untimed run per engine (warm-up), checking that all compute the same grads
        reference = workload.check(workload.run(engines["ours"]))
        fns = {name: (lambda ops=ops, run=workload.run: run(ops)) for name, ops in engines.items()}
        fns["numpy"] = workload.floor
        for name, fn in fns.items():
            if name != "ours":
                got = fn() if name == "numpy" else workload.check(fn())
                if not np.allclose(got, reference, rtol=1e-9, atol=1e-12):
                    print(f"  warning: {name} disagrees with ours on {workload.name}'s grads")
        times = interleaved_times(fns, args.repeats, args.budget)
        rows.append((workload, {name: Spread.of(t) for name, t in times.items()}))

    for workload, spreads in rows:
        calls = ", ".join(f"{name} {spread.n}" for name, spread in spreads.items())
        print(f"{workload.name:<9} {workload.description}  (timed calls: {calls})")
    print()
    print_table(rows)
    print()
    print("ms: min, median and interquartile range of the timed calls; ratios > 1: the numerator takes longer")
    print_targets({workload.name: spreads for workload, spreads in rows})
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
    sys.exit(status)
