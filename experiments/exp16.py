"""exp16 -- step 16's cycles, counted: what the cyclic GC finds in a strongref graph.

The workload is exp17's loop (`iterations` graphs x -> square -> ... -> y)
with the collector off. Then the user's last references go (x = y = None)
and one `gc.collect()` runs with `gc.DEBUG_SAVEALL`, which puts everything
the collector found unreachable into `gc.garbage` instead of freeing it. The
workload counts it by type and records one row per type (the run's
`records` table): `object_type`, `count`, `bytes`.

What a strongref graph leaves for the collector, per unary op: the
Function, its output Variable, its `inputs` list, its `outputs` list and the
StrongRef in it -- five GC-tracked containers -- and one Variable for the
leaf: 5d + 1 per graph, every one of them on or behind the cycle
Function -> outputs -> StrongRef -> Variable -> creator -> Function. The
arrays are not GC-tracked (an ndarray holds no Python references), so the
collector never "finds" them; they are freed because the Variables holding
them are. The census counts them as the arrays the found objects hold:
d + 1 per graph, (d + 1) * size * itemsize bytes.

- strongref: the collector finds iterations * (5d + 1) objects and with them
  iterations * (d + 1) arrays -- every graph the loop built. Until this
  collection all of them were held (the peak: iterations graphs).
- weakref: no graph is a cycle, so each was freed by reference counting as
  soon as y was rebound, and the last one at x = y = None. The collector
  finds nothing: every count is 0. The peak is two graphs (the new one is
  built while y still holds the old one).

Python 3.11 keeps instance attributes inline, so no `dict` appears; an
engine whose objects carry `__dict__`s (or other containers) shows them
under their own type.

After the census the workload empties the saved containers (lists, dicts,
instance dicts), which breaks the cycles so reference counting frees them:
the run has exactly one collection, the census's, and ends holding nothing.
"""
from __future__ import annotations

import gc
from collections import Counter
from typing import Any

import numpy as np

from experiments.exp17 import workload as exp17_loop
from harness.experiment import (
    DTYPE_PARAM,
    SEED_PARAM,
    Expectation,
    Expected,
    Experiment,
    Param,
    Params,
    Workbench,
)
from harness.model import CONTAINERS_PER_OP, CYCLIC, GRAPH_OWNERSHIP, REFCOUNTED, chain_bytes, graph_containers

# Types reported even when none were found, so weakref's zeros are rows too.
CENSUS_TYPES = ("Variable", "Function", "list", "dict", "StrongRef", "weakref", "ndarray")


def _type_name(obj: Any, function_type: type | None) -> str:
    if function_type is not None and isinstance(obj, function_type):
        return "Function"  # Square, Add, ...: one row for the engine's ops
    if type(obj).__name__ == "ReferenceType":
        return "weakref"
    return type(obj).__name__


def _release(found: list[Any]) -> None:
    """Break the cycles of objects the census saved, so refcounting frees them."""
    for obj in found:
        if isinstance(obj, (list, dict)):
            obj.clear()
        elif isinstance(getattr(obj, "__dict__", None), dict):
            vars(obj).clear()


def census(bench: Workbench) -> None:
    """One collection with DEBUG_SAVEALL; record what it found, by type."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
    finally:
        gc.set_debug(0)
    found = list(gc.garbage)
    gc.garbage.clear()
    counts = Counter(_type_name(obj, bench.engine.function_type) for obj in found)
    arrays = {id(a): a for obj in found for a in gc.get_referents(obj) if isinstance(a, np.ndarray)}
    for name in dict.fromkeys([*CENSUS_TYPES, *sorted(counts)]):
        if name == "ndarray":
            bench.record(object_type="ndarray", count=len(arrays), bytes=sum(a.nbytes for a in arrays.values()),
                         gc_tracked=False)
        else:
            bench.record(object_type=name, count=counts.get(name, 0), bytes=None, gc_tracked=True)
    arrays.clear()
    _release(found)


def workload(bench: Workbench) -> None:
    exp17_loop(bench)
    # exp17's loop has returned, taking the user's last references with it:
    # only cycles hold anything now.
    bench.sample("dropped")
    census(bench)
    bench.sample("census")


def found_objects(variant: str, p: Params) -> int | None:
    """GC-tracked objects the census collection finds."""
    ownership = GRAPH_OWNERSHIP.get(variant)
    if ownership == CYCLIC:
        return p.iterations * graph_containers(p)
    if ownership == REFCOUNTED:
        return 0
    return None


def expected(variant: str, p: Params) -> Expected:
    graph = chain_bytes(p.size, p.depth, p.dtype)
    ownership = GRAPH_OWNERSHIP.get(variant)
    if ownership == CYCLIC:
        return Expected(0, p.iterations * graph)
    if ownership == REFCOUNTED:
        return Expected(0, min(p.iterations, 2) * graph)
    return Expected(None, None)


def expectations(variant: str, p: Params) -> list[Expectation]:
    model, found = expected(variant, p), found_objects(variant, p)
    if found is None:
        return []
    if GRAPH_OWNERSHIP[variant] == CYCLIC:
        per_op, fixed = (p.get("graph_containers_per_op", CONTAINERS_PER_OP), p.get("graph_containers_fixed", 1))
        what = (f"the collector finds every graph: {per_op} containers per op and {fixed} more per graph "
                f"(ours: the leaf Variable), per iteration")
        held = "with the collector off every graph is held until the census"
    else:
        what = "weakref graphs are no cycles: the collector finds nothing"
        held = "weakref holds at most two graphs (the old one until y is rebound)"
    dropped = model.numpy_bytes_peak if GRAPH_OWNERSHIP[variant] == CYCLIC else 0
    return [
        Expectation(what, "gc_collected_objects", "==", found),
        Expectation("one collection ran: the census's", "gc_collections", "==", 1),
        Expectation(held, "numpy_bytes_peak", "==", model.numpy_bytes_peak),
        Expectation("after the census nothing is held", "numpy_bytes_final", "==", 0),
        Expectation("once the loop has returned, all it held is cycle debt" if dropped else
                    "weakref graphs are no cycles: no cycle debt", "cycle_debt_peak_bytes", "==", dropped),
        Expectation("the census collection paid the debt", "cycle_debt_final_bytes", "==", 0),
    ]


EXPERIMENT = Experiment(
    name="exp16",
    title="Step 16: a census of the reference cycles the GC finds (strongref) and doesn't (weakref)",
    seed_step="16",
    claim="every strongref graph is a cycle that only the cyclic GC can free: one collection "
    "finds all of them, 5 containers per op; weakref leaves the collector nothing",
    workload=workload,
    variants=("strongref", "weakref"),
    params=(
        Param("iterations", int, 10, "graphs built before the census", minimum=1),
        Param("size", int, 10000, "elements per array", minimum=1),
        Param("depth", int, 3, "nested square() calls per graph", minimum=1),
        Param("gc", str, "off", "the collector stays off until the census collection", choices=("off",)),
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    probes=("tracemalloc", "rss", "gc", "census"),
    doc=__doc__ or "",
)
