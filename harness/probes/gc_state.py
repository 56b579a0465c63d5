"""The cyclic collector's own counters, read without allocating.

The collector decides when to run from one number: gen-0's count, the
container allocations minus deallocations since the last collection. Any
container the observer allocates at a sample point moves that number, and so
do the free lists: a tuple, list or dict taken from or returned to CPython's
per-type free list changes the count differently from a fresh one. So the
observer reads nothing through `gc.get_count()` or `gc.get_stats()` (each
builds a tuple or a list of dicts); it reads the collector's state struct
(`struct _gc_runtime_state`, the same layout in CPython 3.11, 3.12 and 3.13)
through ctypes views made once, before the workload. Reading `.value` of such
a view makes a Python int and nothing else.

The struct is found inside the interpreter state by a signature: thresholds
set for a moment to values nothing else holds, then checked field by field
against the gc module (enabled flag, thresholds, counts, statistics). Where
that fails (another implementation or layout) `locate()` returns None with
the reason, and the harness says the observer could not be made neutral.
"""
from __future__ import annotations

import ctypes
import gc
import struct
from dataclasses import dataclass

GENERATIONS = 3
_SIGNATURE = (987_651, 4_321, 1_234)  # thresholds no program sets


class _Generation(ctypes.Structure):
    _fields_ = [("gc_next", ctypes.c_size_t), ("gc_prev", ctypes.c_size_t),
                ("threshold", ctypes.c_int), ("count", ctypes.c_int)]


class _Stats(ctypes.Structure):
    _fields_ = [("collections", ctypes.c_ssize_t), ("collected", ctypes.c_ssize_t),
                ("uncollectable", ctypes.c_ssize_t)]


class _GcRuntimeState(ctypes.Structure):
    _fields_ = [
        ("trash_delete_later", ctypes.c_void_p), ("trash_delete_nesting", ctypes.c_int),
        ("enabled", ctypes.c_int), ("debug", ctypes.c_int),
        ("generations", _Generation * GENERATIONS), ("generation0", ctypes.c_void_p),
        ("permanent_generation", _Generation), ("generation_stats", _Stats * GENERATIONS),
    ]


@dataclass(frozen=True)
class GcStateView:
    """Leaf views of the collector's counters: each `.value` is a plain int.

    `count[g]`: gen-g's count (for gen 0, containers allocated minus freed
    since its last collection; for gen 1 and 2, collections of the younger
    generation since theirs). `collections[g]`, `collected[g]`,
    `uncollectable[g]`: the running totals `gc.get_stats()` reports.
    """

    address: int
    count: tuple[ctypes.c_int, ...]
    threshold: tuple[ctypes.c_int, ...]
    collections: tuple[ctypes.c_ssize_t, ...]
    collected: tuple[ctypes.c_ssize_t, ...]
    uncollectable: tuple[ctypes.c_ssize_t, ...]


def _view(address: int) -> GcStateView:
    def field(ctype: type, offset: int) -> ctypes._SimpleCData:
        return ctype.from_address(address + offset)

    generations = _GcRuntimeState.generations.offset
    stats = _GcRuntimeState.generation_stats.offset
    gen_size, stats_size = ctypes.sizeof(_Generation), ctypes.sizeof(_Stats)
    return GcStateView(
        address=address,
        count=tuple(field(ctypes.c_int, generations + g * gen_size + _Generation.count.offset)
                    for g in range(GENERATIONS)),
        threshold=tuple(field(ctypes.c_int, generations + g * gen_size + _Generation.threshold.offset)
                        for g in range(GENERATIONS)),
        collections=tuple(field(ctypes.c_ssize_t, stats + g * stats_size + _Stats.collections.offset)
                          for g in range(GENERATIONS)),
        collected=tuple(field(ctypes.c_ssize_t, stats + g * stats_size + _Stats.collected.offset)
                        for g in range(GENERATIONS)),
        uncollectable=tuple(field(ctypes.c_ssize_t, stats + g * stats_size + _Stats.uncollectable.offset)
                            for g in range(GENERATIONS)),
    )


def _mapping_end(address: int) -> int | None:
    """End of the readable mapping that holds `address` (reading past it would crash)."""
    try:
        with open("/proc/self/maps", encoding="ascii") as maps:
            for line in maps:
                span, perms = line.split()[:2]
                low, high = (int(part, 16) for part in span.split("-"))
                if low <= address < high and perms.startswith("r"):
                    return high
    except OSError:
        return None
    return None


def _agrees_with_gc_module(view: GcStateView) -> bool:
    was_enabled = gc.isenabled()
    try:
        gc.disable()
        gc.collect(0)  # the counts are now known: the stats move by one collection
        stats = gc.get_stats()
        counts = gc.get_count()
        agrees = (
            tuple(v.value for v in view.threshold) == gc.get_threshold()
            and tuple(v.value for v in view.collections) == tuple(s["collections"] for s in stats)
            and tuple(v.value for v in view.collected) == tuple(s["collected"] for s in stats)
            and view.count[1].value == counts[1] and view.count[2].value == counts[2]
        )
        before = view.collections[0].value
        gc.collect(0)
        return agrees and view.collections[0].value == before + 1
    finally:
        if was_enabled:
            gc.enable()


def _locate() -> tuple[GcStateView | None, str]:
    if not hasattr(ctypes, "pythonapi") or not hasattr(ctypes.pythonapi, "PyInterpreterState_Get"):
        return None, "this interpreter has no C API to find its collector state (not CPython?)"
    get_interpreter = ctypes.pythonapi.PyInterpreterState_Get
    get_interpreter.restype = ctypes.c_void_p
    interpreter = get_interpreter()
    end = _mapping_end(interpreter)
    if end is None:
        return None, "the interpreter state is not in a readable mapping (/proc/self/maps)"
    saved = gc.get_threshold()
    threshold_at = _GcRuntimeState.generations.offset + _Generation.threshold.offset
    gen_size = ctypes.sizeof(_Generation)
    found = []
    gc.set_threshold(*_SIGNATURE)
    try:
        memory = ctypes.string_at(interpreter, min(end - interpreter, 4 << 20))
        needle = struct.pack("i", _SIGNATURE[0])
        position = memory.find(needle)
        while position != -1:
            start = position - threshold_at
            if start >= 0 and start % 8 == 0:
                thresholds = [struct.unpack_from("i", memory, position + g * gen_size)[0]
                              for g in range(GENERATIONS)]
                if tuple(thresholds) == _SIGNATURE:
                    found.append(interpreter + start)
            position = memory.find(needle, position + 1)
    finally:
        gc.set_threshold(*saved)
    if len(found) != 1:
        return None, f"the collector state's signature was found {len(found)} times, not once"
    view = _view(found[0])
    if not _agrees_with_gc_module(view):
        return None, "the collector state found does not agree with the gc module"
    return view, ""


_located: tuple[GcStateView | None, str] | None = None


def locate() -> tuple[GcStateView | None, str]:
    """The collector's counters, or None and why they could not be found (once per process)."""
    global _located
    if _located is None:
        _located = _locate()
    return _located
