"""`rss` and `uss` probes: the process's resident memory from psutil.

RSS counts every page the process touches -- interpreter, libraries, freed
memory the allocator keeps -- so it is noisy and compared with tolerances.
USS (memory unique to the process) reads /proc/PID/smaps and costs
milliseconds per sample, so it is its own probe, off by default.
"""
from __future__ import annotations

from typing import Any

import psutil

from harness.probes.base import Probe, TrialState


class RssProbe(Probe):
    name = "rss"
    description = "resident set size (psutil memory_info().rss) at each sample"
    columns = ("rss_bytes",)

    def start(self, state: TrialState) -> None:
        self._process = psutil.Process()

    def sample(self, row: dict[str, Any]) -> None:
        row["rss_bytes"] = self._process.memory_info().rss


class UssProbe(Probe):
    name = "uss"
    description = "unique set size (psutil memory_full_info().uss) at each sample; slow"
    columns = ("uss_bytes",)

    def start(self, state: TrialState) -> None:
        self._process = psutil.Process()

    def sample(self, row: dict[str, Any]) -> None:
        row["uss_bytes"] = self._process.memory_full_info().uss
