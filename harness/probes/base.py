"""What every probe is: started before the workload, asked for its columns at
each sample point, stopped after, with a chance to add to the trial result.

The observer must not move what it observes: a sample point runs with the
collector paused and must leave gen-0's count and CPython's free lists as
the workload left them, so the collections fall where they would with no
probe at all. So `sample` writes plain numbers into the row it is given (a
view of the trial's sample file) and creates no tuple, list, dict or slice
-- the types with free lists -- and keeps nothing it creates. Nor does it
call a C function that takes its arguments as a tuple (METH_VARARGS, e.g.
`bytes.find` on 3.11): a full collection empties the free lists, and the
first such tuple after it would stay on the tuple free list. Other
temporaries (an iterator, a bound method) are freed before it returns, and a
container freed right after it is made leaves the count as it was.
`neutral` says whether a probe manages that (see each probe's docstring).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.interface import EngineAPI

if TYPE_CHECKING:
    from harness.probes.gc_state import GcStateView
    from harness.probes.numpy_domain import NumpyDomainTracer

NOT_AVAILABLE = math.nan  # written where a probe cannot see: an empty cell in the tables


@dataclass
class TrialState:
    """What probes may know of the running trial."""

    engine: EngineAPI
    gc_view: "GcStateView | None" = None  # the collector's counters, read without allocating
    tracer: "NumpyDomainTracer | None" = None  # numpy-domain bytes (numpy-visible engines)
    iteration: int = -1  # the iteration running now; -1 before the first
    # gen-0's count as the workload left it when the current sample point
    # began (the sample point's own temporaries move it while it runs)
    count_at_sample: int = 0


class Probe:
    name = "probe"
    description = ""
    #: sample columns this probe fills, in order
    columns: tuple[str, ...] = ()
    #: its sample point allocates nothing that moves the collector
    neutral = True

    def start(self, state: TrialState) -> None:
        pass

    def sample(self, row: Any, at: int) -> None:
        """Write this probe's columns to row[at], row[at + 1], ..."""

    def stop(self, result: dict[str, Any]) -> None:
        pass
