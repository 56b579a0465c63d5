"""Memory assertions for your own pytest suite, exact for array memory.

In the spirit of pytest-memray's `limit_memory` / `limit_leaks`, but counted
in tracemalloc's numpy domain: the bytes of live array data, to the byte,
the same every run (see `harness.probes.numpy_domain`). Only buffers
allocated inside the block count, so what the test set up before is not
charged to it.

    from harness.assertions import track_numpy_memory, assert_freed_without_gc

    with track_numpy_memory() as mem:
        y = square(square(square(Variable(np.ones(10_000)))))
        del y
    assert mem.retained == 0          # every array of the graph was freed
    mem.assert_peak_at_most("320 kB")

    assert_freed_without_gc(lambda: square(square(Variable(np.ones(10_000)))))

The cyclic GC is paused inside the blocks by default (`gc_enabled=False`):
what is freed is then freed by reference counting alone, so a graph that is
a reference cycle shows as retained every time instead of whenever a
collection happens to run. Limits are bytes (int) or strings such as
"640 kB", "1.5 MB", "2 MiB". Failures raise `NumpyMemoryLimitExceeded`
(an AssertionError) naming the limit and the measured value.
"""
from __future__ import annotations

import contextlib
import gc
import re
import tracemalloc
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from harness.probes.numpy_domain import NUMPY_DOMAIN, NumpyDomainTracer

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


class NumpyMemoryLimitExceeded(AssertionError):
    """A numpy-memory limit was exceeded; the message names the limit and the measured bytes."""


def parse_bytes(limit: int | str) -> int:
    """Bytes from an int or a string with a unit: "640 kB" (10**3), "2 MiB" (2**20)."""
    if isinstance(limit, bool) or not isinstance(limit, (int, str)):
        raise TypeError(f"a memory limit is bytes (int) or a string like '640 kB', got {limit!r}")
    if isinstance(limit, int):
        value = limit
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", limit)
        unit = (match.group(2) or "B").lower() if match else ""
        if not match or unit not in _UNITS:
            raise ValueError(f"cannot read {limit!r} as a memory size; use e.g. '640 kB', '1.5 MB', '2 MiB'")
        value = round(float(match.group(1)) * _UNITS[unit])
    if value < 0:
        raise ValueError(f"a memory limit cannot be negative, got {limit!r}")
    return value


def format_bytes(n: int) -> str:
    """Human units with the exact count: '320.0 kB (320,000 bytes)'; '0 B' below 1 kB."""
    if abs(n) < 1000:
        return f"{n} B"
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit} ({n:,} bytes)"
    raise AssertionError("unreachable")


@dataclass
class NumpyMemory:
    """Numpy-domain bytes of one tracked block: filled when the block ends.

    `peak`: the most array bytes allocated in the block alive at once.
    `retained`: array bytes allocated in the block and still alive at its end.
    """

    peak: int | None = None
    retained: int | None = None
    _tracer: NumpyDomainTracer | None = None

    @property
    def current(self) -> int:
        """Array bytes allocated in the block and alive now (inside the block)."""
        if self._tracer is None:
            raise RuntimeError("current is readable only inside the tracked block")
        return _current_bytes(self._tracer)

    def assert_peak_at_most(self, limit: int | str) -> None:
        if self.peak is None:
            raise RuntimeError("this interpreter gives no exact numpy-domain peak (see harness.probes.numpy_domain)")
        _check("peak", self.peak, limit)

    def assert_retained_at_most(self, limit: int | str) -> None:
        _check("retained", self.retained, limit)


def _current_bytes(tracer: NumpyDomainTracer) -> int:
    if tracer.exact_peak:  # only the numpy domain is traced: the running total is it
        return tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.DomainFilter(True, NUMPY_DOMAIN)])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _check(what: str, measured: int | None, limit: int | str) -> None:
    allowed = parse_bytes(limit)
    if measured is None:
        raise RuntimeError("the tracked block has not ended yet")
    if measured > allowed:
        raise NumpyMemoryLimitExceeded(f"{what} {format_bytes(measured)} of numpy arrays; "
                                       f"limit {format_bytes(allowed)}")


@contextlib.contextmanager
def track_numpy_memory(gc_enabled: bool = False) -> Iterator[NumpyMemory]:
    """Track the numpy-domain bytes allocated in the block; read `.peak` and `.retained` after it.

    tracemalloc must not be tracing already (it is restarted here, and two
    users of it would mix their figures); it is stopped at the end.
    """
    if tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is already tracing (a nested track_numpy_memory, or python -X "
                           "tracemalloc); numpy-domain figures would mix with it")
    tracer = NumpyDomainTracer()
    memory = NumpyMemory(_tracer=tracer)
    was_enabled = gc.isenabled()
    if not gc_enabled:
        gc.disable()
    tracer.start()
    try:
        yield memory
        memory.retained = _current_bytes(tracer)
        memory.peak = tracemalloc.get_traced_memory()[1] if tracer.exact_peak else None
    finally:
        memory._tracer = None
        tracer.stop()
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def limit_numpy_memory(
    peak: int | str | None = None, retained: int | str | None = None, gc_enabled: bool = False
) -> Iterator[NumpyMemory]:
    """Like `track_numpy_memory`, and assert the limits when the block ends.
    Also a decorator: `@limit_numpy_memory(retained=0)`."""
    with track_numpy_memory(gc_enabled) as memory:
        yield memory
    if retained is not None:
        memory.assert_retained_at_most(retained)
    if peak is not None:
        memory.assert_peak_at_most(peak)


def assert_max_numpy_peak(limit: int | str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call `func(*args, **kwargs)` and assert the array bytes alive at once never exceed `limit`.
    Returns what `func` returned."""
    with track_numpy_memory() as memory:
        result = func(*args, **kwargs)
    memory.assert_peak_at_most(limit)
    return result


def assert_max_numpy_retained(limit: int | str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call `func(*args, **kwargs)`, drop what it returns, and assert at most `limit` array bytes
    it allocated are still alive (0: it leaks no array)."""
    with track_numpy_memory() as memory:
        func(*args, **kwargs)
    memory.assert_retained_at_most(limit)


@dataclass(frozen=True)
class FreedGraph:
    """What `assert_freed_without_gc` measured: the array bytes the result held while alive."""

    held: int
    retained: int


def assert_freed_without_gc(make_graph: Callable[..., Any], *args: Any, **kwargs: Any) -> FreedGraph:
    """Build a result with `make_graph(*args, **kwargs)`, drop it with the cyclic GC off, and
    assert every array it held was freed by reference counting alone.

    Fails when the result is kept alive by a reference cycle (the step-16
    engine) or by anything else; the message says which, by running a
    collection afterwards.
    """
    with track_numpy_memory() as memory:
        result = make_graph(*args, **kwargs)
        held = memory.current
        del result
        retained = memory.current
        if retained:
            gc.collect()  # only to tell a cycle from a reference held elsewhere
            freed_by_gc = retained - memory.current
    if held == 0:
        raise NumpyMemoryLimitExceeded(
            f"{getattr(make_graph, '__name__', 'make_graph')} returned nothing holding numpy arrays "
            "allocated by it: there is no graph whose freeing could be checked")
    if retained:
        if freed_by_gc == retained:
            cause = "; a gc.collect() then freed all of it: the graph is a reference cycle"
        elif freed_by_gc:
            cause = (f"; a gc.collect() then freed {format_bytes(freed_by_gc)}: part of it is a reference "
                     "cycle, the rest is referenced from elsewhere")
        else:
            cause = "; a gc.collect() freed none of it: something still references the graph"
        raise NumpyMemoryLimitExceeded(
            f"the result was not freed without the cyclic GC: retained {format_bytes(retained)} of numpy "
            f"arrays after it was dropped (it held {format_bytes(held)}); limit 0 B{cause}")
    return FreedGraph(held=held, retained=retained)
