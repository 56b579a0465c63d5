"""Building blocks of the analytic model: the array bytes a graph holds.

Every experiment derives its expected numpy-domain bytes from the structure
of its graph, counting data buffers (not references: `Add.backward` returns
one array for both inputs, and it is one buffer). The blocks:

- one array of `size` elements holds `size * itemsize` bytes;
- a chain `x -> f1 -> ... -> f_depth` holds `depth + 1` arrays while it is
  alive: the leaf's data and each Function output's data (each Function
  keeps its inputs, so the leaf's array lives as long as the graph);
- how long graphs live is the variant's business: refcounting frees a
  graph when its last user reference drops (weakref, retain_grad); a
  strongref graph is a cycle and waits for the cyclic GC; no_grad records no
  graph, so an intermediate dies as soon as the next op has consumed it.
"""
from __future__ import annotations

import gc
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from engine.variants import UnknownVariantError, get_variant

# How each built-in variant frees graphs, for the models to branch on.
CYCLIC = "cyclic"          # strongref: only the cyclic GC frees a graph
REFCOUNTED = "refcounted"  # weakref, retain_grad: freed when the last reference drops
NO_GRAPH = "no_graph"      # no_grad: nothing recorded
GRAPH_OWNERSHIP = {
    "strongref": CYCLIC,
    "weakref": REFCOUNTED,
    "retain_grad": REFCOUNTED,
    "no_grad": NO_GRAPH,
}


def modelled_as(variant: str) -> str:
    """The built-in variant whose model describes `variant`: itself when it is
    built in, else what the variant declares (`Variant.model_as`; the official
    DeZero frees graphs and grads as retain_grad does), else its own name,
    for which the experiments' models make no claim. Run time only: for a
    `file:` or `module:` variant this imports the engine."""
    return model_source(variant)[0]


def model_source(variant: str) -> tuple[str, str | None]:
    """(the variant whose model judges `variant`, and where that came from:
    "built-in", "declared", or None when no model applies)."""
    if variant in GRAPH_OWNERSHIP:
        return variant, "built-in"
    try:
        declared = get_variant(variant).model_as
    except UnknownVariantError:
        return variant, None
    return (declared, "declared") if declared else (variant, None)


def array_bytes(size: int, dtype: str = "float64") -> int:
    """Bytes of one array's data buffer: what numpy reports to tracemalloc."""
    return int(size) * np.dtype(dtype).itemsize


def chain_bytes(size: int, depth: int, dtype: str = "float64") -> int:
    """Bytes a live chain of `depth` unary ops on one leaf holds: depth + 1 arrays."""
    return (depth + 1) * array_bytes(size, dtype)


# What the cyclic GC sees of a graph. Each unary op on a strongref engine
# leaves five GC-tracked containers: the Function, its output Variable, its
# `inputs` list, its `outputs` list and the StrongRef in it; the leaf adds
# its Variable. (Instance dicts are not counted: Python 3.11 keeps
# attributes inline and makes a dict only when `__dict__` is asked for.)
CONTAINERS_PER_OP = 5


# gen-0's count is not only the graphs: the loop's first iteration makes a
# few containers of its own that stay (the iterations generator, the
# engine's config context: 11 or 12 measured on CPython 3.11, 3.12 and 3.13
# at depth 1, 3 and 9), and inside an op its temporaries lift the count above
# what the graph keeps (by 2 at most, measured the same way). A collection
# can come before `iterations * containers` reaches the threshold by that
# much, so a claim that none can come keeps this margin.
LOOP_CONTAINERS_MARGIN = 32


def strongref_graph_containers(depth: int) -> int:
    """GC-tracked objects one strongref chain of `depth` unary ops leaves behind."""
    return CONTAINERS_PER_OP * depth + 1


def graph_containers(p: Mapping[str, Any]) -> int:
    """GC containers one cyclic chain of `p.depth` ops leaves: the engine's own
    count where its model was inferred (harness.inference), else ours."""
    per_op, fixed = p.get("graph_containers_per_op"), p.get("graph_containers_fixed")
    if per_op is not None and fixed is not None:
        return int(per_op) * int(p["depth"]) + int(fixed)
    return strongref_graph_containers(int(p["depth"]))


def gen0_threshold(p: Mapping[str, Any]) -> int:
    """Gen-0's threshold in the trial the parameters belong to (700 on CPython
    3.11 and 3.12, 2000 on 3.13), else this interpreter's."""
    threshold = p.get("gc_threshold_gen0")
    return int(threshold) if threshold is not None else gc.get_threshold()[0]


def graphs_per_collection(depth: int, gen0_threshold: int) -> Fraction:
    """How many strongref graphs are built between two gen-0 collections.

    The collector runs when allocations minus deallocations of tracked
    containers pass gen-0's threshold; a strongref graph frees none of its
    containers, so it adds its whole count. The arrays play no part: a graph
    of 1 GB and one of 1 KB weigh the same.
    """
    return Fraction(gen0_threshold, strongref_graph_containers(depth))


# numpy reuses a temporary operand for the next operation ("temporary
# elision") when it is at least this big and nothing else refers to it.
NUMPY_ELIDE_BYTES = 256 * 1024


def scalar_times_array_transient(size: int, dtype: str = "float64") -> int:
    """Bytes `2 * x * gy` (Square.backward) has alive beyond its result.

    Below NUMPY_ELIDE_BYTES the temporary `2 * x` is a second full array
    beside the product. From it up, numpy computes the product in the
    temporary's buffer, and what remains is the 0-d array it makes of the
    Python scalar 2: one item (measured: 8 bytes for float64, 4 for float32).
    """
    n = array_bytes(size, dtype)
    return n if n < NUMPY_ELIDE_BYTES else np.dtype(dtype).itemsize
