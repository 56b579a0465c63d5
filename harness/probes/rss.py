"""`rss` and `uss` probes: the process's resident memory.

RSS counts every page the process touches -- interpreter, libraries, freed
memory the allocator keeps -- so it is noisy and compared with statistics.
On Linux both read the files psutil reads (`/proc/self/statm` for RSS,
`/proc/self/smaps_rollup` for USS: the sum of its Private_* lines) with
`os.pread` into bytes and parse the digits by hand, because psutil builds
lists and tuples, which would move the collector (see `harness.probes.base`);
so do methods that take their arguments as a tuple, like `bytes.find`.
Elsewhere they call psutil and say they are not neutral. USS costs
milliseconds per sample (the kernel walks every mapping), so it is its own
probe, off by default.
"""
from __future__ import annotations

import os
from typing import Any

import psutil

from harness.probes.base import Probe, TrialState

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_SPACE, _NEWLINE, _ZERO, _NINE = 32, 10, 48, 57
_PRIVATE = b"Private_"


def _field(text: bytes, index: int) -> int:
    """The `index`-th space-separated number of `text`, without splitting it."""
    value = field = 0
    for byte in text:
        if byte == _SPACE:
            field += 1
            if field > index:
                break
        elif field == index:
            value = value * 10 + byte - _ZERO
    return value


def _private_kib(text: bytes) -> int:
    """Sum of the `Private_*:  N kB` lines of smaps_rollup, one byte at a time:
    `bytes.find` and `startswith` take their arguments as a tuple."""
    total = value = matched = 0
    private = False
    for byte in text:
        if byte == _NEWLINE:
            if private:
                total += value
            value = matched = 0
            private = False
        elif private:
            if _ZERO <= byte <= _NINE:
                value = value * 10 + byte - _ZERO
        elif matched >= 0:
            if byte == _PRIVATE[matched]:
                matched += 1
                private = matched == len(_PRIVATE)
            else:
                matched = -1  # not a Private_ line
    return total


class _ProcFileProbe(Probe):
    path = ""

    def start(self, state: TrialState) -> None:
        try:
            self._fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self._fd = None
            self._process = psutil.Process()
            self.neutral = False

    def stop(self, result: dict[str, Any]) -> None:
        if self._fd is not None:
            os.close(self._fd)


class RssProbe(_ProcFileProbe):
    name = "rss"
    description = "resident set size at each sample (/proc/self/statm, as psutil's memory_info().rss)"
    columns = ("rss_bytes",)
    path = "/proc/self/statm"

    def sample(self, row: Any, at: int) -> None:
        if self._fd is None:
            row[at] = self._process.memory_info().rss
            return
        row[at] = _field(os.pread(self._fd, 128, 0), 1) * _PAGE


class UssProbe(_ProcFileProbe):
    name = "uss"
    description = "unique set size at each sample (/proc/self/smaps_rollup, as psutil's uss); slow"
    columns = ("uss_bytes",)
    path = "/proc/self/smaps_rollup"

    def sample(self, row: Any, at: int) -> None:
        if self._fd is None:
            row[at] = self._process.memory_full_info().uss
            return
        row[at] = _private_kib(os.pread(self._fd, 8192, 0)) * 1024
