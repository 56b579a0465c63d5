"""Exact live bytes of numpy array buffers, from tracemalloc's numpy domain.

numpy reports every data buffer it allocates or frees to tracemalloc under
its own domain (`np.lib.tracemalloc_domain`, 389047), so the bytes in that
domain are exactly the bytes of live array data, to the byte, every run.

tracemalloc keeps one running total (and one peak) over all domains, and
by default it also traces every Python object allocation, which would mix
the interpreter's own churn into the figure. So after starting tracemalloc
we give the Python allocators back their original (untraced) functions:
numpy's `PyTraceMalloc_Track` calls still land, Python allocations no longer
do, and the running total is then the traced domains alone, current and
peak. `clear_traces()` at the start means buffers allocated before the
workload (the harness's own) are not counted.

Reading that total must not move the cyclic GC (see `harness.probes.gc_state`):
`get_traced_memory()` returns a new tuple, and a tuple changes gen-0's count
or the tuple free list. So the two totals are found once in tracemalloc's
own memory (a static in 3.11, a field of `_PyRuntime` from 3.12) by
allocating and freeing arrays of sizes nothing else has and keeping the one
address that follows each; at a sample point they are read, and the peak
reset, through ctypes views, allocating nothing. Where they cannot be found
the tracer falls back to the tuple-returning calls and says so
(`neutral` is False).

tracemalloc's total counts every domain. Only numpy's is expected; `foreign`
takes one snapshot at the end of a trial and reports bytes still traced in
any other domain (an engine calling `PyTraceMalloc_Track` itself).
"""
from __future__ import annotations

import ctypes
import math
import struct
import tracemalloc

import numpy as np

NUMPY_DOMAIN = np.lib.tracemalloc_domain
_PY_ALLOCATOR_DOMAINS = (0, 1, 2)  # PYMEM_DOMAIN_RAW, _MEM, _OBJ
# Array sizes, in bytes, that no other buffer of a fresh process has: each
# step leaves only the addresses that hold the running totals.
_PROBE_SIZES = (1_234_567, 2_345_671, 3_456_793)
_BSS_SPAN = 4 << 20


class _PyMemAllocatorEx(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]


def _python_allocators() -> list[_PyMemAllocatorEx]:
    allocators = []
    for domain in _PY_ALLOCATOR_DOMAINS:
        allocator = _PyMemAllocatorEx()
        ctypes.pythonapi.PyMem_GetAllocator(domain, ctypes.byref(allocator))
        allocators.append(allocator)
    return allocators


def _set_python_allocators(allocators: list[_PyMemAllocatorEx]) -> None:
    for domain, allocator in zip(_PY_ALLOCATOR_DOMAINS, allocators):
        ctypes.pythonapi.PyMem_SetAllocator(domain, ctypes.byref(allocator))


def _writable_regions_of_tracemalloc() -> list[tuple[int, int]]:
    """The writable mappings of the binary that holds tracemalloc (its data
    and bss, and the anonymous mapping that continues its bss)."""
    code = ctypes.cast(ctypes.pythonapi.PyTraceMalloc_Track, ctypes.c_void_p).value
    rows = []
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            for line in maps:
                parts = line.split()
                low, high = (int(part, 16) for part in parts[0].split("-"))
                rows.append((low, high, parts[1], parts[5] if len(parts) > 5 else ""))
    except OSError:  # no /proc: the totals are read by the tuple-returning calls
        return []
    binary = next((path for low, high, _, path in rows if low <= code < high), None)
    if not binary:
        return []
    regions, follows_binary = [], False
    for low, high, perms, path in rows:
        if path == binary:
            if perms.startswith("rw"):
                regions.append((low, high))
            follows_binary = True
        elif follows_binary and not path and perms.startswith("rw") and regions and regions[-1][1] == low:
            regions.append((low, min(high, low + _BSS_SPAN)))  # the bss, not a heap that may follow it
            follows_binary = False
        else:
            follows_binary = False
    return regions


def _addresses_holding(value: int, regions: list[tuple[int, int]]) -> set[int]:
    needle = struct.pack("N", value)
    found = set()
    for low, high in regions:
        memory = ctypes.string_at(low, high - low)
        position = memory.find(needle)
        while position != -1:
            if position % ctypes.sizeof(ctypes.c_size_t) == 0:
                found.add(low + position)
            position = memory.find(needle, position + 1)
    return found


def _still(addresses: set[int], value: int) -> set[int]:
    return {a for a in addresses if ctypes.c_size_t.from_address(a).value == value}


def _locate_totals() -> tuple[ctypes.c_size_t, ctypes.c_size_t] | None:
    """Views of tracemalloc's (current, peak) totals, found while tracing with
    an empty trace table, or None."""
    regions = _writable_regions_of_tracemalloc()
    if not regions:
        return None
    # Search for a total no other word holds (never 0, which is everywhere),
    # then keep the addresses that follow it through each step.
    held = [np.empty(_PROBE_SIZES[0], dtype=np.uint8)]
    current = _addresses_holding(tracemalloc.get_traced_memory()[0], regions)
    for size in _PROBE_SIZES[1:]:
        held.append(np.empty(size, dtype=np.uint8))
        current = _still(current, tracemalloc.get_traced_memory()[0])
    peak_value = tracemalloc.get_traced_memory()[1]
    held.clear()  # the current total falls, the peak stays
    current = _still(current, tracemalloc.get_traced_memory()[0])
    peak = _still(_addresses_holding(peak_value, regions), peak_value)
    tracemalloc.reset_peak()
    peak = _still(peak, tracemalloc.get_traced_memory()[1])
    if len(current) != 1 or len(peak) != 1 or current == peak:
        return None
    return ctypes.c_size_t.from_address(current.pop()), ctypes.c_size_t.from_address(peak.pop())


class NumpyDomainTracer:
    """Start/stop tracing; read numpy-domain bytes now and the peak since the last read."""

    def __init__(self) -> None:
        self.exact_peak = False
        self.neutral = False  # totals read through views: a read allocates nothing
        self.highest_taken = 0  # the highest peak take_peak() returned, for the trial's overall peak
        self._current: ctypes.c_size_t | None = None
        self._peak: ctypes.c_size_t | None = None

    def start(self) -> None:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        untraced = _python_allocators()
        tracemalloc.start(1)
        _set_python_allocators(untraced)
        tracemalloc.clear_traces()
        probe = [object() for _ in range(64)]  # Python allocations must not show
        self.exact_peak = tracemalloc.get_traced_memory() == (0, 0)
        del probe
        if not self.exact_peak:  # pragma: no cover - depends on the interpreter
            tracemalloc.stop()
            tracemalloc.start(1)
            return
        totals = _locate_totals()
        tracemalloc.clear_traces()
        tracemalloc.reset_peak()
        if totals is not None and totals[0].value == 0 and totals[1].value == 0:
            self._current, self._peak = totals
            self.neutral = True

    def current(self) -> int:
        """numpy bytes now."""
        if self._current is not None:
            return self._current.value
        return self._slow_read()[0]

    def take_peak(self) -> int:
        """The highest numpy bytes since the previous take, which starts the next interval."""
        if self._peak is not None:
            peak = self._peak.value
            self._peak.value = self._current.value  # what tracemalloc.reset_peak() does
            if peak > self.highest_taken:
                self.highest_taken = peak
            return peak
        if not self.exact_peak:  # pragma: no cover
            return math.nan  # not measured: an empty cell
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        self.highest_taken = max(self.highest_taken, peak)
        return peak

    def overall_peak(self) -> int:
        """The highest numpy bytes since tracing started (outside measurement)."""
        if not self.exact_peak:  # pragma: no cover
            return math.nan  # not measured: an empty cell
        return max(self.highest_taken, tracemalloc.get_traced_memory()[1])

    def read(self) -> tuple[int, int]:
        """(bytes now, peak since the previous read): a tuple, so not for sample points."""
        return self.current(), self.take_peak()

    def _slow_read(self) -> tuple[int, int]:
        if self.exact_peak:
            return tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot().filter_traces(  # pragma: no cover
            [tracemalloc.DomainFilter(True, NUMPY_DOMAIN)]
        )
        return sum(stat.size for stat in snapshot.statistics("filename")), 0  # pragma: no cover

    def foreign(self) -> dict[int, int]:
        """Bytes traced now in domains other than numpy's, by domain (outside measurement)."""
        totals: dict[int, int] = {}
        for trace in tracemalloc.take_snapshot().traces:
            if trace.domain != NUMPY_DOMAIN:
                totals[trace.domain] = totals.get(trace.domain, 0) + trace.size
        return totals

    def stop(self) -> None:
        self._current = self._peak = None
        tracemalloc.stop()
