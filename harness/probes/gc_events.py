"""`gc` probe: every cyclic-GC collection during the workload.

The collector runs when the count of container allocations minus
deallocations passes gen-0's threshold: it counts objects, not bytes, so a
graph holding megabytes of arrays weighs as much as one holding bytes.
Each event records generation, objects collected, uncollectable, duration
and the iteration it fell in.
"""
from __future__ import annotations

import gc
import time
from typing import Any

from harness.probes.base import Probe, TrialState


class GcProbe(Probe):
    name = "gc"
    description = "gc.callbacks: generation, collected, uncollectable, duration, iteration of each collection"

    def start(self, state: TrialState) -> None:
        self._state = state
        self._started_at = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        self._state.events.append(
            {
                "iteration": self._state.iteration,
                "generation": info["generation"],
                "collected": info["collected"],
                "uncollectable": info["uncollectable"],
                "duration_s": time.perf_counter() - self._started_at,
            }
        )

    def stop(self, result: dict[str, Any]) -> None:
        gc.callbacks.remove(self._callback)
