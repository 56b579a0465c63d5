"""What every probe is: started before the workload, asked for its columns at
each sample point, stopped after, with a chance to add to the trial result.

Probes run at sample points with the collector paused and free all they
allocate there, so they leave gen-0's allocation count as the workload left
it: the collection schedule the GC probe reports is the workload's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.interface import EngineAPI


@dataclass
class TrialState:
    """What probes may know of the running trial."""

    engine: EngineAPI
    iteration: int = -1  # the iteration running now; -1 before the first
    events: list[dict[str, Any]] = field(default_factory=list)


class Probe:
    name = "probe"
    description = ""
    #: sample columns this probe fills
    columns: tuple[str, ...] = ()

    def start(self, state: TrialState) -> None:
        pass

    def sample(self, row: dict[str, Any]) -> None:
        pass

    def stop(self, result: dict[str, Any]) -> None:
        pass
