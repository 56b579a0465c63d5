"""Forward + backward time of this engine against the official DeZero and PyTorch (CPU).

    python benchmarks/engine_speed.py [--repeats N] [--budget SECONDS]

Workloads (each timed as forward and backward together; best of several
repeats, timeit-style: one call per repeat, the cyclic GC off while timing):

  chain   a 2,000-step chain `y = y * x + x` on 0-d float64 arrays
          (per-op overhead of a deep graph);
  tree    a binary sum tree over 2,000 leaves: `xi * xi`, then pairwise add
          until one root (a wide graph: the official DeZero sorts its
          candidate list on every insert, quadratic in the width);
  squares ten iterations of `square(square(square(x)))` plus backward on
          1,000,000-element float64 arrays (numpy-bound; the seeds' loop).

Engines: ours (the default engine, step 18-22 configuration), the official
DeZero 0.0.13 (`dezero/core_simple.py` loaded on its own: the package's
__init__ fails on numpy 2, which removed `np.int`), and PyTorch 2.13.0 CPU with
one thread. The optional engines come from `pip install -e .[compare]`; a
missing one is reported and skipped.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
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


@dataclass
class Workload:
    name: str
    description: str
    run: Callable[[SimpleNamespace], Any]
    check: Callable[[Any], np.ndarray]  # what must agree across engines


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
        ),
        Workload(
            "tree",
            f"sum tree over {TREE_LEAVES:,} leaves of x*x",
            lambda ops: tree(ops, leaves),
            lambda xs: np.array([_grad(x) for x in xs]),
        ),
        Workload(
            "squares",
            f"{SQUARES_ITERATIONS} x three squares, {SQUARES_SIZE:,} elements",
            lambda ops: squares(ops, big),
            lambda x: np.asarray(_grad(x)),
        ),
    ]


def _grad(x: Any) -> np.ndarray:
    grad = x.grad
    return grad.numpy() if hasattr(grad, "numpy") else np.asarray(grad)


# --- timing --------------------------------------------------------------------------------


def best_times(fns: dict[str, Callable[[], Any]], repeats: int, budget: float) -> dict[str, float]:
    """Best of `repeats` single calls per engine, timed round-robin.

    Each round runs every engine once, starting with a different engine each
    round, so no engine always runs first (cold allocator, caches) or right
    after another engine's big frees. An engine that has spent `budget`
    seconds stops after at least 2 calls.
    """
    timers = {name: timeit.Timer(fn) for name, fn in fns.items()}  # timeit turns the GC off while timing
    best = {name: float("inf") for name in fns}
    spent = {name: 0.0 for name in fns}
    names = list(fns)
    for i in range(repeats):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            if i >= 2 and spent[name] > budget:
                continue
            elapsed = timers[name].timeit(number=1)
            best[name] = min(best[name], elapsed)
            spent[name] += elapsed
            gc.collect()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="repeats per measurement (best is kept)")
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per engine and workload before fewer repeats")
    args = parser.parse_args(argv)

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()} {platform.system()}")
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
    print()

    rows = []
    for workload in workloads():
        # one untimed run per engine (warm-up), checking that all compute the same grads
        reference = workload.check(workload.run(engines["ours"]))
        for name, ops in engines.items():
            if name != "ours":
                got = workload.check(workload.run(ops))
                if not np.allclose(got, reference, rtol=1e-9, atol=1e-12):
                    print(f"  warning: {name} disagrees with ours on {workload.name}'s grads")
        fns = {name: (lambda ops=ops, run=workload.run: run(ops)) for name, ops in engines.items()}
        rows.append((workload, best_times(fns, args.repeats, args.budget)))

    header = f"{'workload':<9} {'what':<38} {'ours ms':>9} {'official ms':>12} {'torch ms':>9} {'official/ours':>14} {'torch/ours':>11}"
    print(header)
    print("-" * len(header))
    for workload, times in rows:
        ours = times["ours"]

        def ms(name: str) -> str:
            return f"{times[name] * 1e3:.1f}" if name in times else "-"

        def ratio(name: str) -> str:
            return f"{times[name] / ours:.2f}x" if name in times else "-"

        print(
            f"{workload.name:<9} {workload.description:<38} {ms('ours'):>9} {ms('official'):>12} "
            f"{ms('torch'):>9} {ratio('official'):>14} {ratio('torch'):>11}"
        )
    print()
    print("ratios > 1: the other engine takes longer than ours")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    status = main()
    print(f"benchmark took {time.perf_counter() - start:.0f} s")
    sys.exit(status)
