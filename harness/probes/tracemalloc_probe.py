"""`tracemalloc` probe: live numpy array bytes, current and peak, exact.

Reads the numpy-domain tracer's totals through views (see
`harness.probes.numpy_domain`): no allocation at a sample point.
"""
from __future__ import annotations

from typing import Any

from harness.probes.base import NOT_AVAILABLE, Probe, TrialState


class TracemallocProbe(Probe):
    name = "tracemalloc"
    description = (
        "numpy-domain bytes from tracemalloc: live array data now (numpy_bytes) and the "
        "highest it reached since the previous sample (numpy_bytes_peak); exact and "
        "deterministic; blind to Python objects and to allocators numpy does not own"
    )
    columns = ("numpy_bytes", "numpy_bytes_peak")

    def start(self, state: TrialState) -> None:
        # An engine whose buffers numpy does not allocate (PyTorch) has no
        # tracer: its columns read "not available", not zero.
        self._tracer = state.tracer
        self.neutral = self._tracer is None or self._tracer.neutral

    def sample(self, row: Any, at: int) -> None:
        tracer = self._tracer
        if tracer is None:
            row[at] = NOT_AVAILABLE
            row[at + 1] = NOT_AVAILABLE
            return
        row[at] = tracer.current()
        row[at + 1] = tracer.take_peak()

    def stop(self, result: dict[str, Any]) -> None:
        if self._tracer is not None:
            result["numpy_peak_exact"] = self._tracer.exact_peak
