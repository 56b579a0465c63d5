"""One trial: one (experiment, variant, parameters, repeat), measured in a
fresh Python process so no other trial's heap, allocator or GC state can
leak into its numbers.

The parent (`harness.runner`) starts `python -m harness.trial` with the
`TrialSpec` as JSON on stdin. The trial appends one JSON line per event to
`events_path`, flushed as it goes, so whatever it measured survives if it is
killed: `sample` (one row of probe readings), `gc` (one collection),
`timeline` (memory_profiler's points), then `result` or `error`.

A trial dies with the run that started it (so a killed run leaves no
orphan still allocating), and a forced run's trial limits its own address
space before the workload starts (see `harness.guard`).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import resource
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from typing import IO, Any, Callable

import numpy as np

from engine.variants import get_variant
from harness.experiment import Params, Workbench
from harness.probes import SAMPLE_PROBES, SAMPLED, TrialState
from harness.probes.sampled import run_sampled

SAMPLED_INTERVAL_S = 0.005


@dataclass
class TrialSpec:
    trial: int
    experiment: str
    variant: str
    params: dict[str, Any]
    repeat: int
    seed: int
    probes: list[str]
    events_path: str
    measure_overhead: bool = True
    malloc_trim: bool = False
    memory_limit_bytes: int | None = None  # RLIMIT_AS for a forced run
    parent_pid: int | None = None  # the run's process, which this trial must not outlive


class EventLog:
    """JSON lines, one per event, flushed at once."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def emit(self, event: str, **fields: Any) -> None:
        self._stream.write(json.dumps({"event": event, **fields}, default=_jsonable) + "\n")
        self._stream.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def malloc_trimmer() -> Callable[[], None]:
    """glibc keeps freed heap memory for reuse, so RSS does not fall when
    arrays below the mmap threshold are freed; malloc_trim(0) hands it back
    before each sample, so RSS shows what is live."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        raise RuntimeError("--malloc-trim needs glibc (malloc_trim); this platform has none") from None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


def _run_workload(spec: TrialSpec, engine: Any, probe_names: list[str], log: EventLog | None) -> dict[str, Any]:
    """Run the workload once with the given probes; return timings and probe results."""
    from harness.registry import get_experiment

    experiment = get_experiment(spec.experiment)
    params = Params(spec.params)
    state = TrialState(engine)
    probes = [SAMPLE_PROBES[name]() for name in SAMPLE_PROBES if name in probe_names]
    result: dict[str, Any] = {}
    clock = {"t0": 0.0}

    def on_sample(iteration: int, phase: str) -> None:
        # Paused collector: a probe cannot trigger a collection, and what it
        # allocates it frees, so gen-0's count is as the workload left it.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            if trim_heap is not None:
                trim_heap()
            row: dict[str, Any] = {"iteration": iteration, "phase": phase,
                                   "t_s": time.perf_counter() - clock["t0"]}
            for probe in probes:
                probe.sample(row)
            if log is not None:
                log.emit("sample", **row)
                for gc_event in state.events:
                    log.emit("gc", **gc_event)
            state.events.clear()
        finally:
            if was_enabled:
                gc.enable()

    def on_record(row: dict[str, Any]) -> None:
        if log is not None:
            log.emit("record", **row)

    trim_heap = malloc_trimmer() if spec.malloc_trim else None
    bench = Workbench(engine, params, np.random.default_rng(spec.seed), state, on_sample, on_record)

    def workload() -> float:
        for probe in probes:
            probe.start(state)
        # A first reading fills whatever a probe caches on first use (psutil
        # does); the start sample is the baseline. Both come before the
        # collection below, so neither is counted against the workload.
        warm_up: dict[str, Any] = {}
        for probe in probes:
            probe.sample(warm_up)
        clock["t0"] = time.perf_counter()
        on_sample(-1, "start")
        # A known GC state: nothing pending, the harness's objects frozen
        # out of the generations the workload's collections scan, gen-0's
        # count at zero whatever the probes did. This collection is not the
        # workload's, so it is not recorded.
        gc.collect()
        gc.freeze()
        # The collection untracked some objects the probes and the event log
        # replace on their next use; freeing an untracked object does not
        # lower gen-0's count, so that first use would leave it higher by a
        # probe-dependent few. One more reading and encoding absorbs it, and
        # a young collection sets the count to zero for every probe set.
        settle: dict[str, Any] = {"iteration": -1, "phase": "settle"}
        for probe in probes:
            probe.sample(settle)
        json.dumps(settle, default=_jsonable)
        del settle
        gc.collect(0)
        state.events.clear()
        if params.get("gc") == "off":
            gc.disable()
        try:
            started = time.perf_counter()
            with engine.configured():
                experiment.workload(bench)
            return time.perf_counter() - started
        finally:
            gc.enable()
            for probe in probes:
                probe.stop(result)
            if log is not None:  # collections after the last sample point
                for gc_event in state.events:
                    log.emit("gc", **gc_event)
            gc.unfreeze()

    if SAMPLED in probe_names:
        timeline, seconds = run_sampled(workload, SAMPLED_INTERVAL_S)
        if log is not None:
            log.emit("timeline", points=timeline)
    else:
        seconds = workload()
    result["workload_seconds"] = seconds
    return result


def _probe_overhead(spec: TrialSpec, engine: Any, measured_seconds: float) -> dict[str, float]:
    """Workload time with every probe and with each probe alone, as ratios to
    the time with no probe.

    All of these runs come after the measured one, so they compare like with
    like: the measured run is the process's first, and its arrays meet fresh
    pages that later runs find already mapped. Repeated (median) when the
    workload is short; once when it is long, so measuring the cost does not
    dominate the run.
    """
    repeats = 5 if measured_seconds < 0.02 else 3 if measured_seconds < 0.1 else 1

    def timed(probe_names: list[str]) -> float:
        times = []
        for _ in range(repeats):
            times.append(_run_workload(spec, engine, probe_names, log=None)["workload_seconds"])
            gc.collect()
        return statistics.median(times)

    bare = timed([])
    overhead = {"bare_workload_seconds": bare}
    for label, probes in [("all_probes", list(spec.probes))] + [(name, [name]) for name in spec.probes]:
        overhead[f"overhead_{label}"] = timed(probes) / bare if bare > 0 else float("nan")
    return overhead


def run_trial(spec: TrialSpec, log: EventLog) -> dict[str, Any]:
    engine = get_variant(spec.variant).load()
    log.emit("start", gc_thresholds=list(gc.get_threshold()), python=sys.version.split()[0])
    result = _run_workload(spec, engine, spec.probes, log)
    if spec.measure_overhead:
        result.update(_probe_overhead(spec, engine, result["workload_seconds"]))
    return result


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGKILL this trial when the run that started it dies, so a
    run killed from outside (or by the OOM killer) leaves no trial running."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:  # not Linux: no such request
        return
    pr_set_pdeathsig = 1
    prctl(pr_set_pdeathsig, signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the request was in place


def limit_address_space(limit: int) -> None:
    """Past this much address space an allocation fails (numpy raises
    MemoryError), so a forced trial that runs out fails alone."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main() -> int:
    spec = TrialSpec(**json.load(sys.stdin))
    die_with_parent(spec.parent_pid)
    if spec.memory_limit_bytes is not None:
        limit_address_space(spec.memory_limit_bytes)
    with open(spec.events_path, "a", encoding="utf-8") as stream:
        log = EventLog(stream)
        try:
            result = run_trial(spec, log)
        except BaseException as error:  # recorded, then reported by exit status
            log.emit(
                "error",
                error=f"{type(error).__name__}: {error}".strip(),
                traceback=traceback.format_exc(),
            )
            return 1
        log.emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
