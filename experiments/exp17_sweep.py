"""exp17_sweep -- how strongref's cost grows: the GC counts objects, not bytes.

exp17's loop (x = Variable(randn(size)); y = square(...(x)), `depth` deep),
run long enough (`iterations`, default 200) for the collector to run, with
the GC on, over four array sizes by default (1e2 to 1e5). Sweep the depth
too, or other sizes, from the command line:

    python -m harness run exp17_sweep --param size=1e2,1e3,1e4,1e5 --param depth=1,3,9

Model, with graph = (depth + 1) * size * itemsize bytes and gen-0's
threshold T (700 on CPython 3.11 and 3.12, 2000 on 3.13: each trial's own
threshold is recorded and used):

- A strongref graph is a cycle, so it is freed only by a collection, and a
  collection comes when allocations minus deallocations of GC-tracked
  containers pass T. A graph adds 5 * depth + 1 containers (harness.model)
  and frees none, so a collection comes every g = T / (5 * depth + 1)
  graphs -- whatever the size of the arrays. Before the first collection at
  least floor(g) - 1 whole graphs are alive (an op's own temporaries never
  make up a graph's worth of containers), so the peak is at least
  (floor(g) - 1) * graph bytes, and at most every graph built. When the
  graphs' containers and the loop's own (a margin of 32: the first
  iteration's few, an op's temporaries; harness.model) stay below T, no
  collection can come and strongref holds every graph, exactly. (At depth 1
  a graph adds 4 or 6 to the count, not 6: its two lists may come from
  CPython's list free list, which the count does not see.)
- The schedule of collections is the same for every array size: the number
  of collections is constant along `size`, and the peak is proportional to
  `size` (within 5%: a collection that falls in the middle of a graph
  promotes part of it to an older generation, and where exactly it falls can
  move by an op with the size, because numpy's own short-lived objects
  differ).
- weakref and no_grad free by reference counting, as in exp17: one graph
  held and two at the peak; x and y held, four arrays at the peak. Exact,
  GC on or off, and proportional to size with no tolerance.
- With the GC off strongref holds every graph: iterations * graph.
"""
from __future__ import annotations

from experiments.exp17 import expected as exp17_expected
from experiments.exp17 import workload
from harness.experiment import (
    DTYPE_PARAM,
    Expectation,
    Expected,
    Experiment,
    GC_PARAM,
    Ordering,
    Param,
    Params,
    SEED_PARAM,
    Trend,
)
from harness.model import (
    CYCLIC,
    LOOP_CONTAINERS_MARGIN,
    GRAPH_OWNERSHIP,
    chain_bytes,
    gen0_threshold,
    graph_containers,
)

PEAK_PROPORTIONALITY_TOLERANCE = 0.05


def no_collection_possible(p: Params) -> bool:
    """gen-0's count cannot pass the threshold: the graphs' containers and the
    loop's own (harness.model.LOOP_CONTAINERS_MARGIN) stay below it."""
    return p.iterations * graph_containers(p) + LOOP_CONTAINERS_MARGIN < gen0_threshold(p)


def expected(variant: str, p: Params) -> Expected:
    # exp17's model; for strongref with the GC on it is the upper bound (no
    # collection at all), and the collector decides within the bounds of
    # expectations().
    return exp17_expected(variant, p)


def strongref_peak_floor(p: Params) -> int:
    """Bytes of the whole graphs alive before the first collection can come:
    the loop's own containers and an op's temporaries count towards the
    threshold too (up to LOOP_CONTAINERS_MARGIN), so it can come that much
    early -- at depth 1 (6 containers a graph), on 3.11, in the 115th graph,
    about two graphs before 700 / 6."""
    room = gen0_threshold(p) - LOOP_CONTAINERS_MARGIN
    whole_graphs = room // graph_containers(p) - 1
    return min(p.iterations, whole_graphs) * chain_bytes(p.size, p.depth, p.dtype)


def expectations(variant: str, p: Params) -> list[Expectation]:
    ownership = GRAPH_OWNERSHIP.get(variant)
    model = expected(variant, p)
    if ownership == CYCLIC and p.gc == "on" and not no_collection_possible(p):
        every_graph = p.iterations * chain_bytes(p.size, p.depth, p.dtype)
        checks = [Expectation(
            f"strongref's peak: at least the graphs built before the first collection "
            f"(floor(({gen0_threshold(p)} - {LOOP_CONTAINERS_MARGIN}) / {graph_containers(p)}) - 1), "
            "at most every graph",
            "numpy_bytes_peak", "between", (strongref_peak_floor(p), every_graph),
        )]
        if p.iterations * graph_containers(p) >= 2 * gen0_threshold(p):
            checks.append(Expectation(
                "twice the gen-0 threshold in containers is allocated: the collector ran",
                "gc_collections", ">=", 1,
            ))
        return checks
    if model.numpy_bytes_final is None:
        return []
    return [
        Expectation(f"{variant}: exp17's exact model", "numpy_bytes_final", "==", model.numpy_bytes_final),
        Expectation(f"{variant}: exp17's exact model", "numpy_bytes_peak", "==", model.numpy_bytes_peak),
    ]


STRONG_GC_ON = {"variant": "strongref", "gc": "on"}

EXPERIMENT = Experiment(
    name="exp17_sweep",
    title="exp17 swept over array size and depth: the GC counts objects, so strongref's bytes grow with size",
    seed_step="17.5",
    claim="the cyclic GC triggers on object counts, not bytes: strongref's collections stay the same "
    "as the arrays grow, so the bytes it holds between collections grow with the array size",
    workload=workload,
    variants=("strongref", "weakref", "no_grad"),
    params=(
        Param("iterations", int, 200, "loop iterations (graphs built)", minimum=1),
        Param("size", int, 10000, "elements per array (swept by default)", minimum=1),
        Param("depth", int, 3, "nested square() calls per graph (sweep: --param depth=1,3,9)", minimum=1),
        GC_PARAM,
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    probes=("tracemalloc", "rss", "gc", "census"),
    sweep={"size": (100, 1_000, 10_000, 100_000)},
    comparisons=(
        Ordering("with the GC on, strongref's peak is above weakref's", "numpy_bytes_peak", ">",
                 left=STRONG_GC_ON, right={"variant": "weakref", "gc": "on"}),
        Ordering("with the GC on, strongref's peak is above no_grad's", "numpy_bytes_peak", ">",
                 left=STRONG_GC_ON, right={"variant": "no_grad", "gc": "on"}),
        Trend("strongref's collections do not change with the array size (the GC counts objects)",
              "gc_collections", "==", along="size", select=STRONG_GC_ON),
        Trend("strongref's peak grows in proportion to the array size",
              "numpy_bytes_peak", "==", along="size", select=STRONG_GC_ON, per_unit=True,
              tolerance=PEAK_PROPORTIONALITY_TOLERANCE),
        Trend("weakref's peak (two graphs) is exactly proportional to the array size",
              "numpy_bytes_peak", "==", along="size", select={"variant": "weakref"}, per_unit=True),
        Trend("more ops per graph, more containers: strongref's collections do not fall with depth",
              "gc_collections", ">=", along="depth", select=STRONG_GC_ON),
    ),
    doc=__doc__ or "",
)
