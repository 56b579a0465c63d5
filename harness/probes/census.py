"""`census` probe: how many engine Variables and Functions are alive.

Counts instances of the engine's own classes among the objects the cyclic GC
tracks, so it sees graphs kept alive by reference cycles as well as by user
references. Engines whose graph nodes are not Python objects (PyTorch's
autograd nodes) report "not available".

`gc.get_objects()` returns a new list, and a list comes from CPython's list
free list when it has one: then freeing it puts it back and nothing moved.
When the free list is empty the list is new (gen-0's count goes up by one)
and freeing it would leave one more list on the free list than the workload
had -- so the probe takes one list back out and keeps it, and puts the
count back. Membership is tested on the type's `__mro__` rather than with
isinstance, which would run an `abc.ABC` class's `__instancecheck__` (and
its caches) inside the sample point.
"""
from __future__ import annotations

import gc
from typing import Any

from harness.probes.base import NOT_AVAILABLE, Probe, TrialState


class CensusProbe(Probe):
    name = "census"
    description = "live engine Variables and Functions (their classes in the MRO of each gc.get_objects() object)"
    columns = ("live_variables", "live_functions")

    def start(self, state: TrialState) -> None:
        self._variable_type = state.engine.variable_type
        self._function_type = state.engine.function_type
        self._count = state.gc_view.count[0] if state.gc_view is not None else None
        self.neutral = self._count is not None
        self._kept: list[list[Any]] = []  # lists taken back out of the free list

    def sample(self, row: Any, at: int) -> None:
        variable_type, function_type = self._variable_type, self._function_type
        count = self._count
        before = count.value if count is not None else 0
        objects = gc.get_objects()
        fresh = count is not None and count.value != before
        variables = functions = 0
        for obj in objects:
            mro = type(obj).__mro__
            if variable_type in mro:
                variables += 1
            elif function_type in mro:
                functions += 1
        del objects
        if fresh:
            self._kept.append([])  # the list just freed, out of the free list again
            count.value = before
        row[at] = variables if variable_type is not None else NOT_AVAILABLE
        row[at + 1] = functions if function_type is not None else NOT_AVAILABLE
