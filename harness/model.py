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

import numpy as np

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


def array_bytes(size: int, dtype: str = "float64") -> int:
    """Bytes of one array's data buffer: what numpy reports to tracemalloc."""
    return int(size) * np.dtype(dtype).itemsize


def chain_bytes(size: int, depth: int, dtype: str = "float64") -> int:
    """Bytes a live chain of `depth` unary ops on one leaf holds: depth + 1 arrays."""
    return (depth + 1) * array_bytes(size, dtype)
