"""The numpy-domain tracer: exact array bytes, blind to Python objects."""
from __future__ import annotations

import numpy as np

from harness.probes.numpy_domain import NumpyDomainTracer


def test_counts_array_buffers_exactly_and_ignores_python_objects() -> None:
    tracer = NumpyDomainTracer()
    tracer.start()
    try:
        assert tracer.exact_peak
        assert tracer.neutral  # the totals were found: a read allocates nothing
        assert tracer.read() == (0, 0)
        junk = [list(range(50)) for _ in range(1000)]  # Python allocations
        assert tracer.read() == (0, 0)
        a = np.empty(10_000)
        assert tracer.read() == (80_000, 80_000)
        b = a + a  # a and b alive together (no scalar operand: numpy may box one in an 8-byte buffer)
        del a
        assert tracer.read() == (80_000, 160_000)
        del b, junk
        assert tracer.read() == (0, 80_000)  # b was alive when the interval began
        assert tracer.read() == (0, 0)
    finally:
        tracer.stop()


def test_peak_sees_a_temporary_freed_before_the_read() -> None:
    tracer = NumpyDomainTracer()
    x = np.ones(1000)
    gy = np.ones(1000)
    tracer.start()
    try:
        gx = 2 * x * gy  # `2 * x` is a temporary of 8,000 bytes
        assert tracer.read() == (8_000, 16_000)
        del gx
    finally:
        tracer.stop()


def test_arrays_allocated_before_start_are_not_counted() -> None:
    before = np.ones(5_000)
    tracer = NumpyDomainTracer()
    tracer.start()
    try:
        del before  # freeing an untracked buffer changes nothing
        assert tracer.read() == (0, 0)
    finally:
        tracer.stop()


FOREIGN_ENGINE = '''
import ctypes
from engine.core import *  # noqa: F401,F403 - our engine's names
from engine import core as _core

_track = ctypes.pythonapi.PyTraceMalloc_Track
_track.argtypes = [ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t]
_kept = []


def square(x):
    buffer = ctypes.create_string_buffer(4096)  # the engine's own buffer, traced in its own domain
    _kept.append(buffer)
    _track(4242, ctypes.addressof(buffer), 4096)
    return _core.square(x)
'''


def test_bytes_an_engine_traces_in_another_domain_are_reported(tmp_path) -> None:
    import harness

    engine_file = tmp_path / "foreign_engine.py"
    engine_file.write_text(FOREIGN_ENGINE, encoding="utf-8")
    run = harness.run("exp17", variants=[f"file:{engine_file}", "weakref"], params={"iterations": 2},
                      out=tmp_path, plots=False, progress=False, probes=["tracemalloc"])
    summary = run.summary.set_index("variant")
    foreign = summary.loc[f"file:{engine_file}"]
    assert foreign["foreign_traced_bytes"] == 2 * 3 * 4096  # three squares per iteration, all kept
    assert foreign["numpy_bytes_final"] == 320_000 + 2 * 3 * 4096
    assert summary.loc["weakref", "foreign_traced_bytes"] == 0
