"""Exact live bytes of numpy array buffers, from tracemalloc's numpy domain.

numpy reports every data buffer it allocates or frees to tracemalloc under
its own domain (`np.lib.tracemalloc_domain`, 389047), so the bytes in that
domain are exactly the bytes of live array data, to the byte, every run.

tracemalloc keeps one running total (and one peak) over all domains, and
by default it also traces every Python object allocation, which would mix
the interpreter's own churn into the figure. So after starting tracemalloc
we give the Python allocators back their original (untraced) functions:
numpy's `PyTraceMalloc_Track` calls still land, Python allocations no longer
do, and `get_traced_memory()` -- O(1), no snapshot -- is then the numpy
domain alone, current and peak. `clear_traces()` at the start means buffers
allocated before the workload (the harness's own) are not counted.

If the interpreter does not allow this (the check in `start` fails), the
probe falls back to filtering snapshots, which is exact for current bytes
but slower, and reports no per-interval peak.
"""
from __future__ import annotations

import ctypes
import tracemalloc

import numpy as np

NUMPY_DOMAIN = np.lib.tracemalloc_domain
_PY_ALLOCATOR_DOMAINS = (0, 1, 2)  # PYMEM_DOMAIN_RAW, _MEM, _OBJ


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


class NumpyDomainTracer:
    """Start/stop tracing; read numpy-domain bytes now and the peak since the last read."""

    def __init__(self) -> None:
        self.exact_peak = False

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

    def read(self) -> tuple[int, int | None]:
        """(current numpy bytes, peak numpy bytes since the previous read)."""
        if self.exact_peak:
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            return current, peak
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.DomainFilter(True, NUMPY_DOMAIN)]
        )
        return sum(stat.size for stat in snapshot.statistics("filename")), None

    def stop(self) -> None:
        tracemalloc.stop()
