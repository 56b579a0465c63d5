"""`tracemalloc` probe: live numpy array bytes, current and peak, exact."""
from __future__ import annotations

from typing import Any

from harness.probes.base import Probe, TrialState
from harness.probes.numpy_domain import NumpyDomainTracer


class TracemallocProbe(Probe):
    name = "tracemalloc"
    description = (
        "numpy-domain bytes from tracemalloc: live array data now (numpy_bytes) and the "
        "highest it reached since the previous sample (numpy_bytes_peak); exact and "
        "deterministic; blind to Python objects and to allocators numpy does not own"
    )
    columns = ("numpy_bytes", "numpy_bytes_peak")

    def __init__(self) -> None:
        self._tracer = NumpyDomainTracer()
        self._visible = True

    def start(self, state: TrialState) -> None:
        # An engine whose buffers numpy does not allocate (PyTorch) would
        # read as zero; report "not available" instead.
        self._visible = state.engine.numpy_visible
        if self._visible:
            self._tracer.start()

    def sample(self, row: dict[str, Any]) -> None:
        if self._visible:
            row["numpy_bytes"], row["numpy_bytes_peak"] = self._tracer.read()
        else:
            row["numpy_bytes"] = row["numpy_bytes_peak"] = None

    def stop(self, result: dict[str, Any]) -> None:
        if self._visible:
            result["numpy_peak_exact"] = self._tracer.exact_peak
            self._tracer.stop()
