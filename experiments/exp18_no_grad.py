"""exp18_no_grad -- steps 18.3-18.5: without backprop, intermediates die as soon as they are used.

The seeds' code:

    x = Variable(np.ones((100, 100, 100)))   # 1,000,000 float64: 8 MB
    y = square(square(square(x)))

    with no_grad():
        x = Variable(np.ones((100, 100, 100)))
        y = square(square(square(x)))

The workload runs that forward `iterations` times, dropping the previous x
and y first, with sample points after x is made and after each square.
N = side**3 * itemsize (8 MB for the seeds' side 100), d = depth.

- weakref / retain_grad (backprop on): each output's creator keeps its
  input (`Function.inputs`), so the whole chain lives while y lives:
  (d + 1) N held, and that is the peak -- "all four 8 MB arrays live".
- no_grad: no Function keeps anything. An intermediate is referenced only
  by the expression that consumes it, so it is freed as soon as the next
  square returns: x and y are held, 2N. While a square runs, x, its input
  and its output are alive: the peak is 3N (2N for depth 1) -- "at most
  three are alive at once".
- strongref (step 16, not a default variant) holds what weakref does, but a
  dropped graph is a cycle: with the GC off the loop ends holding every
  iteration's graph, iterations * (d + 1) N; with it on, somewhere between.
- np.ones fills x from a small scalar buffer; it never decides the peak.
"""
from __future__ import annotations

import numpy as np

from harness.experiment import (
    DTYPE_PARAM,
    GC_PARAM,
    SEED_PARAM,
    Expectation,
    Expected,
    Experiment,
    Param,
    Params,
    Workbench,
)
from harness.model import CYCLIC, GRAPH_OWNERSHIP, NO_GRAPH, REFCOUNTED, array_bytes


def workload(bench: Workbench) -> None:
    eng, p = bench.engine, bench.params
    shape = (p.side, p.side, p.side)
    for _ in bench.iterations(p.iterations):
        x = h = y = None  # the previous iteration's arrays go first
        x = eng.variable(np.ones(shape, dtype=p.dtype))
        bench.sample("x")
        h = x
        for k in range(1, p.depth + 1):
            # As in square(square(square(x))): the previous h is released
            # when h is rebound, i.e. once the next square has used it.
            h = eng.square(h)
            if k < p.depth:
                bench.sample(f"square {k}")
        y = h  # noqa: F841 - held for the sample at the end of the iteration


def expected(variant: str, p: Params) -> Expected:
    n = array_bytes(p.side**3, p.dtype)
    graph = (p.depth + 1) * n
    ownership = GRAPH_OWNERSHIP.get(variant)
    if ownership == REFCOUNTED:
        return Expected(graph, graph)
    if ownership == CYCLIC:
        # With the GC on, the upper bound: what is held if no collection runs.
        return Expected(p.iterations * graph, p.iterations * graph, bound=p.gc == "on")
    if ownership == NO_GRAPH:
        return Expected(2 * n, min(p.depth + 1, 3) * n)
    return Expected(None, None)


def expectations(variant: str, p: Params) -> list[Expectation]:
    model = expected(variant, p)
    ownership = GRAPH_OWNERSHIP.get(variant)
    if model.numpy_bytes_final is None:
        return []
    if ownership == CYCLIC and p.gc == "on":
        graph = (p.depth + 1) * array_bytes(p.side**3, p.dtype)
        return [Expectation(
            "strongref with the GC on holds between one graph and every graph built",
            "numpy_bytes_final", "between", (graph, model.numpy_bytes_final),
        )]
    what = {
        REFCOUNTED: "with backprop on, each Function keeps its input: the whole chain lives while y does",
        CYCLIC: "strongref with the GC off keeps every iteration's graph",
        NO_GRAPH: "no_grad holds x and y; at most x, a square's input and its output are alive at once",
    }[ownership]
    return [
        Expectation(what, "numpy_bytes_final", "==", model.numpy_bytes_final),
        Expectation(what, "numpy_bytes_peak", "==", model.numpy_bytes_peak),
    ]


EXPERIMENT = Experiment(
    name="exp18_no_grad",
    title="Steps 18.3-18.5: no_grad keeps no graph, so intermediates are freed at once",
    seed_step="18.3-18.5",
    claim="with backprop on, y = square(square(square(x))) keeps all four 8 MB arrays; "
    "under no_grad two are held and at most three are alive at once",
    workload=workload,
    variants=("weakref", "no_grad"),
    params=(
        Param("iterations", int, 3, "forward passes", minimum=1),
        Param("side", int, 100, "x is np.ones((side, side, side))", minimum=2),
        Param("depth", int, 3, "nested square() calls", minimum=1),
        GC_PARAM,
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    probes=("tracemalloc", "rss", "gc", "census"),
    doc=__doc__ or "",
)
