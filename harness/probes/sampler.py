"""The sample point: one row of every probe's readings, written to the
trial's sample file without allocating a container.

A row is `iteration, phase, t_s`, each probe's columns, and a marker (the
row's number + 1) written last, so a reader knows a row is whole. Rows go
into a file mapped into memory (`mmap`, shared) -- one mapping, sized before
the workload for the rows the trial is expected to write (the memory guard's
upper bound, `harness.guard.sample_rows`): a write is a store into the page
cache, so what a trial measured is on disk even if it is killed a moment
later, and the parent can read a running trial's rows. Only past that size
does the sample path map a further chunk, which makes new objects (an
argument tuple among them); the sample point then reports the drift it
caused, and `--verify-observer` shows it.

Phases are numbered in order of first use ("start" 0, "end" 1); a new
phase's name is appended to the phase file when first seen.
"""
from __future__ import annotations

import gc
import mmap
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.probes.base import Probe, TrialState

FIXED_COLUMNS = ("iteration", "phase", "t_s")
FIRST_PHASES = ("start", "end")
_ROWS_PER_CHUNK = 4 * 4096  # a chunk is then a whole number of pages for any row width
_SPARE_ROWS = 64  # the warm-up row and sample points a workload adds beyond the estimate
_ITEM = 8  # float64


def sample_columns(probes: Sequence[Probe] | Sequence[type[Probe]]) -> list[str]:
    return [*FIXED_COLUMNS, *(c for probe in probes for c in probe.columns), "marker"]


class Sampler:
    """Take sample points into `path` (or, with None, into a scratch ring that is not kept)."""

    def __init__(self, path: Path | None, probes: Sequence[Probe], state: TrialState,
                 phases_path: Path | None = None, before_sample: Any = None, expected_rows: int = 0) -> None:
        self.probes = tuple(probes)
        self.width = len(sample_columns(probes))
        self.rows = 0
        self.drifted_points = 0  # sample points after which gen-0's count was not as before
        self.largest_drift = 0
        self._state = state
        self._count = state.gc_view.count[0] if state.gc_view is not None else None
        self._before_sample = before_sample  # e.g. malloc_trim, part of every sample point
        offsets, at = [], len(FIXED_COLUMNS)
        for probe in self.probes:
            offsets.append(at)
            at += len(probe.columns)
        self._pairs = tuple(zip(self.probes, offsets))
        self._marker_at = self.width - 1
        self._phases = {name: code for code, name in enumerate(FIRST_PHASES)}
        rows_per_chunk = -(-max(expected_rows + _SPARE_ROWS, _ROWS_PER_CHUNK) // _ROWS_PER_CHUNK) * _ROWS_PER_CHUNK
        self._chunk_bytes = rows_per_chunk * self.width * _ITEM
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644) if path is not None else -1
        self._phase_fd = (os.open(phases_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                          if phases_path is not None else -1)
        if self._phase_fd >= 0:
            os.write(self._phase_fd, "".join(f"{name}\n" for name in FIRST_PHASES).encode())
        self._chunk = -1
        self._map: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._at = 0  # row offset within the chunk, in items
        self._map_chunk(0)
        self._t0 = time.perf_counter()

    def _map_chunk(self, chunk: int) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, (chunk + 1) * self._chunk_bytes)
            new_map = mmap.mmap(self._fd, self._chunk_bytes, offset=chunk * self._chunk_bytes)
        else:
            new_map = mmap.mmap(-1, self._chunk_bytes)  # scratch: the same chunk again
        new_view = memoryview(new_map).cast("d")
        old_map, old_view = self._map, self._view
        self._map = new_map
        self._view = new_view
        self._chunk = chunk
        self._at = 0
        if old_view is not None:
            old_view.release()
            old_map.close()

    def start_clock(self) -> None:
        self._t0 = time.perf_counter()

    def sample(self, iteration: int, phase: str) -> None:
        """A sample point. The collector is paused, so no probe can set one off.

        Pass the bound method (`sampler.sample`), not the sampler: calling an
        instance goes through `__call__` with an argument tuple, a method
        call does not."""
        enabled = gc.isenabled()
        gc.disable()
        count = self._count
        before = count.value if count is not None else 0
        self._state.count_at_sample = before
        if self._before_sample is not None:
            self._before_sample()
        row, at = self._view, self._at
        code = self._phases.get(phase)
        if code is None:
            code = self._new_phase(phase)
        row[at] = iteration
        row[at + 1] = code
        row[at + 2] = time.perf_counter() - self._t0
        for probe, offset in self._pairs:
            probe.sample(row, at + offset)
        self.rows += 1
        row[at + self._marker_at] = self.rows
        self._at = at + self.width
        if self._at >= len(row):
            self._map_chunk(self._chunk + 1 if self._fd >= 0 else 0)
        if count is not None and count.value != before:
            # Something on the sample path moved the count: say so (verify-observer
            # shows it) and put the count back. That undoes the count, not what
            # the free lists gained, so the run is no longer neutral; it is reported.
            self.drifted_points += 1
            if abs(count.value - before) > abs(self.largest_drift):
                self.largest_drift = count.value - before
            count.value = before
        if enabled:
            gc.enable()

    def _new_phase(self, phase: str) -> int:
        code = len(self._phases)
        self._phases[phase] = code
        if self._phase_fd >= 0:
            os.write(self._phase_fd, phase.encode() + b"\n")
        return code

    def warm_up(self) -> None:
        """One sample into a row that is then overwritten: whatever a probe or
        this path makes on first use is made now, before the workload."""
        rows = self.rows
        self.sample(-1, "start")
        self.rows = rows
        self._at -= self.width
        if self._at < 0:  # pragma: no cover - a chunk holds thousands of rows
            self._at = 0
        self._view[self._at + self._marker_at] = 0
        self.drifted_points = 0
        self.largest_drift = 0

    def phases(self) -> list[str]:
        return list(self._phases)

    def close(self) -> None:
        if self._view is not None:
            self._view.release()
            self._map.close()
            self._view = self._map = None
        if self._fd >= 0:
            os.ftruncate(self._fd, self.rows * self.width * _ITEM)
            os.close(self._fd)
            self._fd = -1
        if self._phase_fd >= 0:
            os.close(self._phase_fd)
            self._phase_fd = -1


def iter_samples(path: Path, columns: Sequence[str], chunk_rows: int) -> "Iterator[Any]":
    """The whole rows of a sample file, `chunk_rows` at a time, as float64
    arrays of shape (rows, columns - 1): the marker column is dropped. Rows
    are whole up to the first that is not (a kill mid-row, or sparse space
    after the last row); reading stops there."""
    import numpy as np

    if not path.exists():
        return
    width = len(columns)
    with open(path, "rb") as stream:
        expected = 1
        while True:
            data = np.fromfile(stream, dtype=np.float64, count=chunk_rows * width)
            data = data[: len(data) // width * width].reshape(-1, width)
            if not len(data):
                return
            whole = data[:, -1] == np.arange(expected, expected + len(data))
            stop = len(data) if whole.all() else int(np.argmin(whole))
            if stop:
                yield data[:stop, :-1]
            if stop < len(data) or len(data) < chunk_rows:
                return
            expected += stop


def read_samples(path: Path, columns: Sequence[str]) -> "Any":
    """The whole rows of a sample file as one float64 array of shape (rows, columns - 1)."""
    import numpy as np

    chunks = list(iter_samples(path, columns, 1 << 20))
    return np.concatenate(chunks) if chunks else np.empty((0, len(columns) - 1))


def read_phases(path: Path) -> list[str]:
    if not path.exists():
        return list(FIRST_PHASES)
    names = [name for name in path.read_text(encoding="utf-8").split("\n") if name]
    return names or list(FIRST_PHASES)


__all__ = ["FIXED_COLUMNS", "Sampler", "iter_samples", "read_phases", "read_samples", "sample_columns"]
