"""`census` probe: how many engine Variables and Functions are alive.

Counts instances of the engine's own classes among the objects the cyclic GC
tracks, so it sees graphs kept alive by reference cycles as well as by user
references. Engines whose graph nodes are not Python objects (PyTorch's
autograd nodes) report "not available".
"""
from __future__ import annotations

import gc
from typing import Any

from harness.probes.base import Probe, TrialState


class CensusProbe(Probe):
    name = "census"
    description = "live engine Variables and Functions (isinstance over gc.get_objects())"
    columns = ("live_variables", "live_functions")

    def start(self, state: TrialState) -> None:
        self._variable_type = state.engine.variable_type
        self._function_type = state.engine.function_type

    def sample(self, row: dict[str, Any]) -> None:
        variables = functions = 0
        for obj in gc.get_objects():
            if self._variable_type is not None and isinstance(obj, self._variable_type):
                variables += 1
            elif self._function_type is not None and isinstance(obj, self._function_type):
                functions += 1
        row["live_variables"] = variables if self._variable_type is not None else None
        row["live_functions"] = functions if self._function_type is not None else None
