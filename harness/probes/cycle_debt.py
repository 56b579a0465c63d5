"""`cycle_debt` probe: the numpy bytes held only by unreachable reference
cycles -- what a full collection would free now -- exact, without running a
collection in the measured process.

At each sample point the trial forks (libc's fork: see `start`). The child, a copy of the process at
that instant, reads the numpy-domain bytes, runs `gc.collect()`, reads them
again and writes the difference to a pipe, then exits; the parent reads the
eight bytes and reaps the child. The parent's collector never runs and its
counts stay as they were: the pipe and its buffer are made at start, the
read goes into that buffer (`os.readv` with a list made at start), and the
child is reaped with `os.waitid`, whose result is a struct that is freed as
soon as it is made (a container made and freed leaves gen-0's count as it
was, and struct sequences keep no free list). The observer test and the
sampler's own drift check prove it.

What it costs: one fork per sample point (page tables copied: about a
millisecond for a small trial, more for a large heap). Opt-in. Engines whose
buffers numpy does not allocate (PyTorch) have no tracer: the column reads
"not available". Linux/macOS only (fork).
"""
from __future__ import annotations

import ctypes
import gc
import os
from typing import Any

from harness.probes.base import NOT_AVAILABLE, Probe, TrialState


class CycleDebtProbe(Probe):
    name = "cycle_debt"
    description = (
        "numpy bytes held only by unreachable reference cycles (what a full collection would free now), "
        "measured in a forked copy of the trial at each sample point: exact, the trial's own collector "
        "untouched; a fork per sample point"
    )
    columns = ("cycle_debt_bytes",)

    def start(self, state: TrialState) -> None:
        self._tracer = state.tracer
        self._read_fd, self._write_fd = os.pipe()
        self._buffer = bytearray(8)
        self._buffers = [self._buffer]
        # libc's fork, not os.fork: os.fork runs the Python-level at-fork hooks
        # (logging registers two), and it copies each hook list to call it --
        # a list that, after a full collection has emptied the free lists, is
        # new and then kept on the list free list: gen-0's count would drift.
        # The child needs none of what those hooks redo: it is single-threaded
        # work (collect, read, write, _exit) in a copy that never returns.
        libc = ctypes.CDLL(None, use_errno=True)
        self._fork = libc.fork
        self._fork.restype = ctypes.c_int
        self._fork.argtypes = ()
        self.neutral = self._tracer is None or self._tracer.neutral

    def sample(self, row: Any, at: int) -> None:
        tracer = self._tracer
        if tracer is None:
            row[at] = NOT_AVAILABLE
            return
        pid = self._fork()
        if pid == 0:  # the copy: collect here, say what it freed, leave
            try:
                before = tracer.current()
                gc.collect()
                os.write(self._write_fd, (before - tracer.current()).to_bytes(8, "little", signed=True))
            finally:
                os._exit(0)
        if pid < 0:
            row[at] = NOT_AVAILABLE
            return
        got = os.readv(self._read_fd, self._buffers)
        os.waitid(os.P_PID, pid, os.WEXITED)
        row[at] = int.from_bytes(self._buffer, "little", signed=True) if got == 8 else NOT_AVAILABLE

    def stop(self, result: dict[str, Any]) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)
