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
