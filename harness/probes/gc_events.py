"""`gc` probe: the cyclic collector's counters at every sample point.

The collector runs when the count of container allocations minus
deallocations passes gen-0's threshold: it counts objects, not bytes, so a
graph holding megabytes of arrays weighs as much as one holding bytes.

At each sample point this probe reads the collector's own state through
views (`harness.probes.gc_state`): each generation's count, and the running
totals of collections, collected and uncollectable objects. No
`gc.callbacks` hook: CPython builds a dict and a tuple for every callback,
and that moves the very count that decides the next collection. The parent
turns the totals into the gc_events table: one row per generation for each
interval between two sample points in which it was collected, with the
number of collections and the objects they freed, and the iteration it
fell in. (Two collections of one generation in one interval share a row;
their durations are not measured.)
"""
from __future__ import annotations

from typing import Any

from harness.probes.base import NOT_AVAILABLE, Probe, TrialState
from harness.probes.gc_state import GENERATIONS

COUNT_COLUMNS = tuple(f"gc_count_gen{g}" for g in range(GENERATIONS))
TOTAL_COLUMNS = tuple(
    f"gc_total_{what}_gen{g}" for what in ("collections", "collected", "uncollectable") for g in range(GENERATIONS)
)


class GcProbe(Probe):
    name = "gc"
    description = ("the collector's counts and its totals of collections, collected and uncollectable "
                   "objects by generation, read from its state at each sample point")
    columns = COUNT_COLUMNS + TOTAL_COLUMNS

    def start(self, state: TrialState) -> None:
        view = state.gc_view
        self.neutral = view is not None
        self._state = state
        # gen-0's count is the sampler's reading at the sample point's start;
        # the older counts change only when a collection runs, never here.
        self._views = () if view is None else (
            *view.count[1:], *view.collections, *view.collected, *view.uncollectable
        )

    def sample(self, row: Any, at: int) -> None:
        if not self._views:
            for offset in range(len(self.columns)):
                row[at + offset] = NOT_AVAILABLE
            return
        row[at] = self._state.count_at_sample
        at += 1
        for view in self._views:
            row[at] = view.value
            at += 1
