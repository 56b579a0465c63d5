"""The memory guard: refuse a run the machine cannot hold, before it starts.

A trial's need is the sum of
- its array bytes: the analytic model's numpy peak for it
  (`Experiment.expected_for(...).numpy_bytes_peak`); for strongref with the
  GC on the model gives only "every graph held", a bound the collector never
  lets a long loop reach, so the guard counts the graphs the collector's
  thresholds let pile up instead (`strongref_held_graphs`, below);
- the Python objects of the graphs it holds: OBJECT_BYTES_PER_ARRAY per
  array the peak holds (each array of a chain graph is one Variable's data,
  and each but the leaf has a Function, two lists and a StrongRef beside it);
- INTERPRETER_BYTES for the trial's own interpreter (Python, numpy,
  pandas-free probes: about 100 MB resident, measured).

The run's own process (the parent) writes each trial's samples to the
tables a chunk at a time and keeps, for the plots, at most about PLOT_ROWS
rows per trial (`harness.table_writer`): PARENT_BYTES_PER_SAMPLE per row it
holds, computed, recorded, and taken from what memory is usable before the
trials share it (PARENT_SAMPLES_TAKE_FROM_USABLE). It does not grow with
the iterations.

The trials that run at once are min(--jobs, the number of trials, repeats
and --verify-observer's blind twins included); the guard takes the largest
that many trials and refuses when together they need more than what is
usable: the memory psutil reports available, minus a MARGIN left for
everything else on the machine (the parent's own interpreter included).

A refused run gets one line with the estimate and the available memory,
unless the user forces it. A forced run's trials each run under an
address-space limit (RLIMIT_AS, set by the trial itself): an equal share of
what is usable among the trials that run at once, plus
ADDRESS_SPACE_ALLOWANCE, the address space an idle trial maps without using
it (shared libraries, thread stacks: about 300 MB measured). Running out
then makes numpy raise MemoryError in the trial, which fails the trial, not
the machine. RLIMIT_AS rather than RLIMIT_DATA: both stop numpy's large
allocations here (numpy maps them anonymously), but the address space also
bounds stacks and file mappings.

Where the model makes no estimate (an external engine, a user's file
engine), the guard says so and does not refuse.
"""
from __future__ import annotations

import gc
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import psutil

from harness.errors import UsageError
from harness.experiment import Experiment, Params
from harness.model import (
    CYCLIC,
    GRAPH_OWNERSHIP,
    LOOP_CONTAINERS_MARGIN,
    array_bytes,
    modelled_as,
    strongref_graph_containers,
)

INTERPRETER_BYTES = 150 * 2**20
ADDRESS_SPACE_ALLOWANCE = 512 * 2**20
MARGIN = 0.20  # of available memory, left to the rest of the machine

# Python objects per array a graph holds. Measured on this machine (CPython
# 3.11.7, numpy 2.4.6) for our engine's strongref chain graphs with size=1,
# the collector off, N graphs built and dropped (/proc/self/statm's
# resident pages before and after, divided by N; N = 200,000):
#   depth 1:   937 B per graph (2 arrays:   469 B per array)
#   depth 3: 2,222 B per graph (4 arrays:   556 B per array)
#   depth 9: 6,075 B per graph (10 arrays:  608 B per array)
# i.e. about 643 B per op (Function, its output Variable and ndarray object,
# the inputs and outputs lists, the StrongRef; malloc's overhead included)
# and 300 B for the leaf. tracemalloc with the Python allocators traced
# agrees on the shape, lower (1,872 B per depth-3 graph: it does not see
# pymalloc's arena slack). 700 B per array covers the per-op figure with
# about 10% to spare; a leaf or a grad array costs less.
OBJECT_BYTES_PER_ARRAY = 700

# The parent's bytes per sample row, every trial's rows together: a float64
# array of (columns x 8 bytes) per row read from the trial's sample file,
# then the samples DataFrame with the identity and parameter columns. Measured
# here: the parent's peak RSS (getrusage's ru_maxrss) over a
# `harness.run("exp17", variants=["strongref"], params={"gc": "off",
# "size": 1, "iterations": N}, probes=["tracemalloc", "rss", "gc"],
# plots=False)`, less its RSS before: 26.9 MB at N = 10, 147.8 MB at 1e5,
# 268.9 MB at 2e5 -- 1,210 B per row beyond a fixed 27 MB (the samples
# table has 22 columns). Counted at about twice that.
PARENT_BYTES_PER_SAMPLE = 2_500
# What the parent holds comes off what the trials may use.
PARENT_SAMPLES_TAKE_FROM_USABLE = True

# Sample points per iteration, by experiment (the start sample and any
# after the loop are SAMPLES_OUTSIDE_LOOP): exp17 samples at the end of each
# iteration; exp18_no_grad also after x and after every square but the
# last; exp18_retain_grad also after the forward. An experiment not listed
# is counted at depth + 2 per iteration.
SAMPLES_PER_ITERATION = {
    "exp16": lambda p: 1,
    "exp17": lambda p: 1,
    "exp17_sweep": lambda p: 1,
    "exp18_no_grad": lambda p: int(p.get("depth", 1)) + 1,
    "exp18_retain_grad": lambda p: 2,
}
SAMPLES_OUTSIDE_LOOP = 3  # the start sample; exp16's "dropped" and "census"

# strongref with the GC on: the graphs held at once are bounded by what the
# collector's thresholds allow (strongref_held_graphs), times this margin.
GC_HELD_MARGIN = 2

# Graphs alive when a collection falls that survive it (promoted to the next
# generation): the previous graph, still bound to y, and the one being built.
SURVIVING_GRAPHS = 2

# Containers the trial's gc.collect() leaves in the old generation just
# before gc.freeze() (the collector's long_lived_total, which freeze() does
# not reset): a full collection is skipped until a quarter of that many have
# been promoted into it since. Measured: len(gc.get_objects()) at a trial's
# gc.freeze(), every probe on (exp17 strongref): 29,758; counted at twice that.
TRIAL_LONG_LIVED_CONTAINERS = 60_000


def strongref_held_graphs(depth: int, iterations: int, thresholds: Sequence[int] | None = None) -> int:
    """An upper bound on the strongref chain graphs of `depth` ops alive at once
    with the cyclic GC on, over a loop of `iterations` (never more than that).

    A graph adds c = 5 * depth + 1 containers to gen-0's count and frees none
    of them (harness.model.strongref_graph_containers), so at most
    (threshold0 + LOOP_CONTAINERS_MARGIN) / c graphs, plus the one being
    built, pile up in gen-0 before a gen-0 collection comes. A collection
    frees every unreachable graph in the generations it scans, and what
    survives it is what is reachable: the previous graph (still bound to y)
    and the part of the new one built so far -- SURVIVING_GRAPHS. (Older
    parts of a graph do not refer to newer parts -- a Variable refers to its
    creator, a Function to its inputs -- so a promoted part keeps nothing in
    the younger generation alive.) The survivors move to gen-1, and once the
    previous graph is dropped they are garbage there until a gen-1 collection
    comes, after threshold1 + 1 gen-0 collections: at most
    SURVIVING_GRAPHS * (threshold1 + 1) graphs in gen-1. A gen-1 collection
    promotes its survivors, as many again, to gen-2, which only a full
    collection frees; it comes after threshold2 + 1 gen-1 collections, and
    not before a quarter of the old generation's size at the last full
    collection has been promoted since (CPython 3.11-3.13's long_lived_pending
    rule; the trial's last full collection is the gc.collect() before its
    gc.freeze(), TRIAL_LONG_LIVED_CONTAINERS). The sum of the three piles,
    times GC_HELD_MARGIN for what this account misses (a collection that
    comes early, an interpreter that promotes differently), bounds the
    graphs held; the collector's worst case -- every container surviving
    every collection, threshold0 * threshold1 * threshold2 of them before a
    gen-2 collection -- is above it (4,375 depth-3 graphs on 3.11, where
    this gives 2,018) and is never approached by this loop.

    Measured on CPython 3.11.7 (`python -m harness run exp17 --variant
    strongref --param size=S --param iterations=N`, the numpy peak over the
    graph's bytes): N = 10,000, S = 100,000 peaked at 295,200,000 bytes, 92
    graphs; N = 300,000, S = 10 (`--probe tracemalloc --probe gc`) at 475
    graphs, just before the first full collection at iteration 158,890 (it
    collected 6,730 containers: about 2 graphs promoted per gen-1
    collection, as counted above). This bound is 2,018 graphs at depth 3
    (2,180 with 3.13's threshold0 of 2000).
    """
    t0, t1, t2 = (thresholds or gc.get_threshold())[:3]
    containers = strongref_graph_containers(depth)
    gen0 = math.ceil((t0 + LOOP_CONTAINERS_MARGIN) / containers) + 1
    gen1 = SURVIVING_GRAPHS * (t1 + 1)
    gen1_collections = max(t2 + 1, math.ceil(TRIAL_LONG_LIVED_CONTAINERS / 4 / (SURVIVING_GRAPHS * containers)) + 1)
    gen2 = SURVIVING_GRAPHS * gen1_collections
    return min(int(iterations), GC_HELD_MARGIN * (gen0 + gen1 + gen2))


@dataclass(frozen=True)
class TrialNeed:
    variant: str
    params: dict[str, Any]
    numpy_bytes_peak: int | None  # None: the model makes no estimate
    object_bytes: int = 0  # the Python objects of the graphs held at the peak
    samples: int = 0  # sample rows the trial writes
    basis: str = "model"  # how numpy_bytes_peak was found: "model", or the GC-bounded graphs

    @property
    def bytes(self) -> int | None:
        if self.numpy_bytes_peak is None:
            return None
        return self.numpy_bytes_peak + self.object_bytes + INTERPRETER_BYTES

    def label(self) -> str:
        return f"{self.variant} " + " ".join(f"{k}={v}" for k, v in self.params.items())

    def breakdown(self) -> str:
        peak = f"numpy peak {human_bytes(self.numpy_bytes_peak or 0)}"
        if self.basis != "model":
            peak += f" ({self.basis})"
        return f"{peak} + {human_bytes(self.object_bytes)} Python objects + {human_bytes(INTERPRETER_BYTES)} interpreter"


@dataclass
class GuardReport:
    """What the guard found; recorded in meta.json as `memory_guard`."""

    available_bytes: int
    usable_bytes_per_trial: int
    jobs: int  # trials that run at once
    largest_need_bytes: int | None
    forced: bool
    memory_limit_bytes: int | None
    without_estimate: list[str] = field(default_factory=list)
    margin: float = MARGIN
    interpreter_bytes: int = INTERPRETER_BYTES
    trials: int = 0
    concurrent_need_bytes: int | None = None  # the largest `jobs` trials together
    parent_sample_bytes: int = 0

    def as_meta(self) -> dict[str, Any]:
        return asdict(self)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _elements_per_array(p: Params) -> int | None:
    if "size" in p:
        return int(p["size"])
    if "side" in p:
        return int(p["side"]) ** 3
    return None


def sample_rows(experiment: Experiment, p: Params) -> int:
    """Sample rows a trial writes (an upper bound): see SAMPLES_PER_ITERATION."""
    per_iteration = SAMPLES_PER_ITERATION.get(experiment.name, lambda q: int(q.get("depth", 0)) + 2)(p)
    return int(p.get("iterations", 1)) * per_iteration + SAMPLES_OUTSIDE_LOOP


def trial_need(experiment: Experiment, variant: str, params: Params,
               thresholds: Sequence[int] | None = None, model_variant: str | None = None) -> TrialNeed:
    """`model_variant`: the model chosen for the variant at plan time (harness.inference), if any."""
    p = Params(params)
    modelled = model_variant or modelled_as(variant)
    model = experiment.expected(modelled, p)
    peak, basis = model.numpy_bytes_peak, "model"
    if peak is None and model.guard_peak is not None:  # no exact peak, but a ceiling for the guard
        peak, basis = model.guard_peak, "the model's ceiling"
    cyclic = GRAPH_OWNERSHIP.get(modelled) == CYCLIC
    if (peak is not None and model.bound and cyclic and p.get("gc") == "on"
            and "iterations" in p and "depth" in p):
        # The bound is every graph built: `iterations` graphs of peak / iterations bytes.
        graphs = strongref_held_graphs(int(p.depth), int(p.iterations), thresholds)
        if graphs < int(p.iterations):
            peak = math.ceil(peak * graphs / int(p.iterations))
            basis = f"{graphs:,} graphs the collector's thresholds let pile up, of {int(p.iterations):,}"
    objects = 0
    elements = _elements_per_array(p)
    if peak is not None and elements:
        arrays = math.ceil(peak / array_bytes(elements, p.get("dtype", "float64")))
        objects = arrays * OBJECT_BYTES_PER_ARRAY
    return TrialNeed(variant, dict(params), peak, objects, sample_rows(experiment, p), basis)


def trial_needs(experiment: Experiment, variants: list[str], param_sets: list[Params],
                copies: int = 1, thresholds: Sequence[int] | None = None,
                models: dict[str, str | None] | None = None) -> list[TrialNeed]:
    """One need per trial the run starts: `copies` per variant and parameters
    (the repeats, twice that with --verify-observer's blind twins)."""
    models = models or {}
    needs = [trial_need(experiment, variant, params, thresholds, models.get(variant))
             for params in param_sets for variant in variants]
    return [need for need in needs for _ in range(max(1, int(copies)))]


def parent_rows(needs: list[TrialNeed]) -> int:
    """Sample rows the parent holds at most: each trial's rows drawn in the
    plots (an envelope of PLOT_ROWS past that many), and one chunk."""
    from harness.table_writer import CHUNK_ROWS, PLOT_ROWS

    return sum(min(need.samples, PLOT_ROWS) for need in needs) + CHUNK_ROWS


def check_memory(needs: list[TrialNeed], jobs: int, force: bool, available_bytes: int | None = None,
                 count_parent: bool | None = None) -> GuardReport:
    """Refuse (UsageError) when the trials that run at once need more than the
    usable memory together, unless forced; a forced run gets an address-space
    limit per trial: an equal share of the usable memory among them."""
    available = psutil.virtual_memory().available if available_bytes is None else available_bytes
    concurrent = max(1, min(int(jobs), len(needs)))
    parent = parent_rows(needs) * PARENT_BYTES_PER_SAMPLE
    if count_parent is None:
        count_parent = PARENT_SAMPLES_TAKE_FROM_USABLE
    usable = max(0, int(available * (1 - MARGIN)) - (parent if count_parent else 0))
    share = usable // concurrent
    estimated = sorted((need for need in needs if need.bytes is not None), key=lambda need: need.bytes, reverse=True)
    together = estimated[:concurrent]
    largest = estimated[0] if estimated else None
    total = sum(need.bytes for need in together) if together else None
    if total is not None and total > usable and not force:
        at_once = (f"; {len(together)} trials run at once (--jobs {jobs}, {len(needs)} trials with repeats) "
                   f"and need {human_bytes(total)} together" if len(together) > 1 else "")
        parent_note = (f", less {human_bytes(parent)} for the run's own sample tables"
                       if parent and count_parent else "")
        raise UsageError(
            f"memory guard: trial {largest.label()} needs an estimated {human_bytes(largest.bytes)} "
            f"({largest.breakdown()}){at_once}, more than the {human_bytes(usable)} usable of "
            f"{human_bytes(available)} available ({MARGIN:.0%} kept free{parent_note}); use smaller "
            f"parameters or fewer --jobs, or --force to run under a memory limit"
        )
    return GuardReport(
        available_bytes=available,
        usable_bytes_per_trial=share,
        jobs=concurrent,
        largest_need_bytes=None if largest is None else largest.bytes,
        forced=force,
        memory_limit_bytes=share + ADDRESS_SPACE_ALLOWANCE if force else None,
        without_estimate=sorted({need.variant for need in needs if need.bytes is None}),
        trials=len(needs),
        concurrent_need_bytes=total,
        parent_sample_bytes=parent,
    )
