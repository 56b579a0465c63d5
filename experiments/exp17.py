"""exp17 -- step 17.5: a weakref graph is freed at once, a strongref graph waits for the GC.

The seeds' loop:

    for i in range(10):
        x = Variable(np.random.randn(10000))   # big data
        y = square(square(square(x)))          # a graph of 3 functions

Each iteration's graph holds depth + 1 = 4 arrays (x and three outputs) of
size * itemsize = 80,000 bytes: 320,000 bytes. Rebinding x and y drops the
user's last references to the previous graph.

- strongref (step 16): the graph is a cycle (Function <-> output), so
  dropping it frees nothing; only a collection does. With the GC off, the
  loop ends holding every graph: iterations * 320,000 bytes, and that is
  also the peak. With the GC on, collections run on object counts (gen-0
  threshold 700 containers), not bytes, so the holding is anywhere between
  one graph and all of them, as the GC events show.
- weakref (step 17): refcounting frees the previous graph the moment `y`
  is rebound: one graph (320,000 bytes) is held at the end of every
  iteration. The peak is two graphs: the new one is built while the old
  one is still bound to `y`.
- no_grad (step 18): no graph; an intermediate is freed as soon as the
  next square has consumed it. At the end x and y are held (2 arrays); the
  peak is 4 arrays: the previous y, the new x, and an op's input and
  output (3 in the first iteration or with depth 1; 2 with both).
"""
from __future__ import annotations

from fractions import Fraction

from harness.experiment import (
    DTYPE_PARAM,
    GC_PARAM,
    SEED_PARAM,
    Expectation,
    Expected,
    Experiment,
    Param,
    Params,
    Ref,
    Workbench,
)
from harness.model import CYCLIC, GRAPH_OWNERSHIP, NO_GRAPH, REFCOUNTED, array_bytes, chain_bytes


def workload(bench: Workbench) -> None:
    eng, p = bench.engine, bench.params
    for _ in bench.iterations(p.iterations):
        x = eng.variable(bench.random_array(p.size))
        h = x
        for _ in range(p.depth):
            h = eng.square(h)
        # Bind y only now, as `y = square(square(square(x)))` does: the
        # previous graph stays alive while the new one is built.
        y = h  # noqa: F841 - held for the sample at the end of the iteration


def _no_grad_peak_arrays(p: Params) -> int:
    previous_y = 1 if p.iterations >= 2 else 0
    op_in_and_out = 2 if p.depth >= 2 else 1  # with depth 1, x is the op's input
    return previous_y + 1 + op_in_and_out


def expected(variant: str, p: Params) -> Expected:
    graph = chain_bytes(p.size, p.depth, p.dtype)
    ownership = GRAPH_OWNERSHIP.get(variant)
    if ownership == CYCLIC:
        # With the GC on this is the upper bound: what is held if no collection runs.
        return Expected(p.iterations * graph, p.iterations * graph, bound=p.gc == "on")
    if ownership == REFCOUNTED:
        return Expected(graph, graph * min(p.iterations, 2))
    if ownership == NO_GRAPH:
        return Expected(2 * array_bytes(p.size, p.dtype), _no_grad_peak_arrays(p) * array_bytes(p.size, p.dtype))
    return Expected(None, None)


def expectations(variant: str, p: Params) -> list[Expectation]:
    model = expected(variant, p)
    if model.numpy_bytes_final is None:
        return []
    graph = chain_bytes(p.size, p.depth, p.dtype)
    if GRAPH_OWNERSHIP[variant] == CYCLIC and p.gc == "on":
        return [
            Expectation(
                "strongref holds between one graph and every graph built (collections free some)",
                "numpy_bytes_final", "between", (graph, model.numpy_bytes_final),
            ),
            # Not "live Functions x bytes per Function": a collection that falls
            # while a graph is being built promotes its first half to an older
            # generation, and a later gen-0 collection frees only the second
            # half, so part-graphs are alive. Each live Variable holds one array.
            Expectation(
                "every array byte held is a live Variable's data (census)",
                "numpy_bytes_final", "==", Ref("live_variables_final", Fraction(array_bytes(p.size, p.dtype))),
            ),
            # Whatever the collections left, all that is held is the graph y
            # still uses and cycles nothing reaches (cycle_debt probe).
            Expectation(
                "everything held but the graph in use is cycle debt",
                "numpy_bytes_final", "==", Ref("cycle_debt_final_bytes", offset=graph),
            ),
        ]
    what = {
        CYCLIC: "strongref with the GC off holds every graph built",
        REFCOUNTED: f"{variant} holds one graph; the peak is two (the old one lives until y is rebound)",
        NO_GRAPH: "no_grad holds x and y; intermediates die as the forward runs",
    }[GRAPH_OWNERSHIP[variant]]
    debt = (p.iterations - 1) * graph if GRAPH_OWNERSHIP[variant] == CYCLIC else 0
    owed = ("every graph but the one in use is cycle debt: a collection would free it"
            if debt else f"{variant} makes no cycles: no cycle debt")
    return [
        Expectation(what, "numpy_bytes_final", "==", model.numpy_bytes_final),
        Expectation(what, "numpy_bytes_peak", "==", model.numpy_bytes_peak),
        Expectation(owed, "cycle_debt_final_bytes", "==", debt),
        Expectation(owed, "cycle_debt_peak_bytes", "==", debt),
    ]


EXPERIMENT = Experiment(
    name="exp17",
    title="Step 17.5: strongref cycles wait for the GC, weakref graphs are freed at once",
    seed_step="17.5",
    claim="with weakref outputs a dropped graph is freed immediately; with strong outputs "
    "every graph is a cycle that holds its arrays until the cyclic GC runs",
    workload=workload,
    variants=("strongref", "weakref", "no_grad"),
    params=(
        Param("iterations", int, 10, "loop iterations (graphs built)", minimum=1),
        Param("size", int, 10000, "elements per array", minimum=1),
        Param("depth", int, 3, "nested square() calls per graph", minimum=1),
        GC_PARAM,
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    doc=__doc__ or "",
)
