"""One trial: one (experiment, variant, parameters, repeat), measured in a
fresh Python process so no other trial's heap, allocator or GC state can
leak into its numbers.

The parent (`harness.runner`) starts `python -m harness.trial` with the
`TrialSpec` as JSON on stdin. Sample rows go to a binary file beside the
event log (`harness.probes.sampler`: a sample point allocates nothing, so it
cannot move the collector); the trial appends one JSON line per event to
`events_path`, flushed as it goes, so whatever it measured survives if it is
killed: `start`, `record` (the workload's own rows), `timeline`
(the sampled probe's RSS points), then `result` or `error`.

A trial dies with the run that started it (so a killed run leaves no
orphan still allocating), and a forced run's trial limits its own address
space before the workload starts (see `harness.guard`).
"""
from __future__ import annotations

import ctypes
import gc
import io
import json
import os
import resource
import signal
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

import numpy as np

from engine.variants import get_variant, register_pickled
from harness.experiment import Params, Workbench
from harness.guard import sample_rows
from harness.probes import SAMPLE_PROBES, SAMPLED, TrialState
from harness.probes.gc_state import GcStateView
from harness.probes.gc_state import locate as locate_gc_state
from harness.probes.numpy_domain import NumpyDomainTracer
from harness.probes.sampled import run_sampled, start_watcher
from harness.probes.sampler import Sampler, sample_columns

SAMPLED_INTERVAL_S = 0.005
TIMELINE_BATCH = 10_000  # the sampled probe's points per event line


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
    measure_overhead: bool = False
    blind: bool = False  # no sample point reads anything: the reference for the observer check
    malloc_trim: bool = False
    memory_limit_bytes: int | None = None  # RLIMIT_AS for a forced run
    parent_pid: int | None = None  # the run's process, which this trial must not outlive
    variant_pickle: str | None = None  # a variant the user registered in the run's process (engine.variants.pickled)
    experiment_pickle: str | None = None  # an experiment a notebook defined (harness.registry.pickled)
    python: str | None = None  # the interpreter the trial runs under (--python); None: the run's own
    pythonpath: str | None = None  # where that interpreter imports this project's packages from


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


def sample_file(events_path: str | Path) -> Path:
    """Where a trial's sample rows go, beside its event log."""
    return Path(events_path).with_suffix(".samples")


def phase_file(events_path: str | Path) -> Path:
    return Path(events_path).with_suffix(".phases")


def _gc_totals(view: GcStateView, with_counts: bool = True) -> dict[str, list[int]]:
    counts = {"count": [v.value for v in view.count]} if with_counts else {}
    return {
        **counts,
        "collections": [v.value for v in view.collections],
        "collected": [v.value for v in view.collected],
        "uncollectable": [v.value for v in view.uncollectable],
    }


def _run_workload(spec: TrialSpec, engine: Any, probe_names: list[str], log: EventLog,
                  samples_to: Path | None, phases_to: Path | None = None, blind: bool = False) -> dict[str, Any]:
    """Run the workload once with the given probes; return timings and what was read at its end.

    `blind`: no sample point reads anything (the workload runs as if no probe
    existed); the collector's totals and the numpy bytes are still read at
    the end, which is what the observer check compares against.
    """
    # The sampled probe's watcher starts first: its interpreter starts while this one sets up.
    watcher = start_watcher(SAMPLED_INTERVAL_S) if SAMPLED in probe_names and not blind else None
    try:
        return _measure(spec, engine, probe_names, log, samples_to, phases_to, blind, watcher)
    finally:
        if watcher is not None:
            watcher.kill()  # after finish() this only makes sure


def _measure(spec: TrialSpec, engine: Any, probe_names: list[str], log: EventLog, samples_to: Path | None,
             phases_to: Path | None, blind: bool, watcher: Any) -> dict[str, Any]:
    from harness.registry import get_experiment

    experiment = get_experiment(spec.experiment)
    params = Params(spec.params)
    gc_view, gc_unavailable = locate_gc_state()
    tracer = NumpyDomainTracer() if engine.numpy_visible else None
    state = TrialState(engine, gc_view=gc_view, tracer=tracer)
    probes = [SAMPLE_PROBES[name]() for name in SAMPLE_PROBES if name in probe_names and not blind]
    trim_heap = malloc_trimmer() if spec.malloc_trim else None
    sampler = Sampler(samples_to, probes, state, phases_to, before_sample=trim_heap,
                      expected_rows=sample_rows(experiment, params))
    bench = Workbench(engine, params, np.random.default_rng(spec.seed), state,
                      _no_sample if blind else sampler.sample, lambda row: log.emit("record", **row))
    result: dict[str, Any] = {"sample_columns": sample_columns(probes)}

    def workload() -> float:
        if tracer is not None:
            tracer.start()  # from here on, every numpy buffer the trial makes counts
        for probe in probes:
            probe.start(state)
        sampler.warm_up()  # first-use costs of the sample path, before the freeze
        # A known GC state: nothing pending and everything the harness made
        # frozen out of the generations the workload's collections scan;
        # gc.freeze() sets every generation's count to 0. The start sample
        # reads that state and, like every sample point, leaves it as it was.
        gc.collect()
        # (the totals only: building this dict moves the counts, which freeze() then zeroes)
        at_start = _gc_totals(gc_view, with_counts=False) if gc_view is not None else None
        gc.freeze()
        if tracer is not None:
            tracer.take_peak()
        sampler.start_clock()
        if not blind:
            sampler.sample(-1, "start")
        if params.get("gc") == "off":
            gc.disable()
        started = time.perf_counter()
        try:
            with engine.configured():
                experiment.workload(bench)
            return time.perf_counter() - started
        finally:
            # Read before the collector is enabled again: a collection it set
            # off now would not be the workload's.
            gc.disable()
            if gc_view is not None:
                result["gc_at_start"] = at_start
                result["gc_at_end"] = _gc_totals(gc_view)
            if tracer is not None:
                result["numpy_bytes_at_end"] = tracer.current()
                result["numpy_bytes_peak_overall"] = tracer.overall_peak()
            result["drifted_sample_points"] = sampler.drifted_points
            result["largest_count_drift"] = sampler.largest_drift
            result["observer"] = {
                "gc_state": gc_view is not None,
                "gc_state_unavailable": gc_unavailable or None,
                "numpy_totals_by_view": None if tracer is None else tracer.neutral,
                # --malloc-trim's ctypes call takes its argument as a tuple
                "probes_not_neutral": [p.name for p in probes if not p.neutral]
                + (["malloc_trim"] if trim_heap is not None else []),
                "blind": blind,
            }
            gc.enable()
            for probe in probes:
                probe.stop(result)
            if tracer is not None:
                foreign = tracer.foreign()
                if foreign:
                    result["foreign_tracemalloc_domains"] = {str(k): v for k, v in foreign.items()}
                tracer.stop()
            gc.unfreeze()

    try:
        if SAMPLED in probe_names and not blind:
            timeline, seconds = run_sampled(workload, SAMPLED_INTERVAL_S, watcher)
            for at in range(0, len(timeline), TIMELINE_BATCH):  # lines the parent reads one at a time
                log.emit("timeline", points=timeline[at:at + TIMELINE_BATCH])
        else:
            seconds = workload()
    finally:
        result["samples"] = sampler.rows
        result["phases"] = sampler.phases()
        sampler.close()
    result["workload_seconds"] = seconds
    return result


def _no_sample(iteration: int, phase: str) -> None:
    pass


OVERHEAD_ROUNDS = 7


def _probe_overhead(spec: TrialSpec, engine: Any) -> dict[str, float]:
    """Workload time with every probe and with each probe alone, as ratios to
    the time with no probe: the median over interleaved rounds, and the
    interquartile range of the per-round ratios as its spread.

    All of these runs come after the measured one, so they compare like with
    like (the measured run is the process's first: its arrays meet fresh
    pages that later runs find already mapped). Each round runs every
    configuration once, in turn, so a change of machine load touches them
    all alike. Opt-in (`--overhead`): it multiplies a trial's time.
    """
    labels = [("bare", [])] + [("all_probes", list(spec.probes))] + [(name, [name]) for name in spec.probes]
    times: dict[str, list[float]] = {label: [] for label, _ in labels}
    null_log = EventLog(io.StringIO())  # the re-runs' records are not kept
    for _ in range(OVERHEAD_ROUNDS):
        for label, probes in labels:
            result = _run_workload(spec, engine, probes, null_log, samples_to=None)
            times[label].append(result["workload_seconds"])
            gc.collect()
    overhead: dict[str, float] = {"bare_workload_seconds": statistics.median(times["bare"])}
    for label, _ in labels[1:]:
        ratios = [t / b for t, b in zip(times[label], times["bare"]) if b > 0]
        if len(ratios) < 2:
            continue
        quartiles = statistics.quantiles(ratios, n=4)
        overhead[f"overhead_{label}"] = statistics.median(ratios)
        overhead[f"overhead_{label}_iqr"] = quartiles[2] - quartiles[0]
    return overhead


def overhead_reruns(probes: int) -> int:
    """Workload runs `--overhead` adds to a trial with this many probes."""
    return OVERHEAD_ROUNDS * (2 + probes)


def run_trial(spec: TrialSpec, log: EventLog, forked: bool = False) -> None:
    """The measured workload, its `result` logged at once (so a timeout in the
    --overhead re-runs that follow loses nothing measured), then those re-runs."""
    if spec.variant_pickle is not None:
        register_pickled(spec.variant_pickle)
    if spec.experiment_pickle is not None:
        from harness.registry import define_pickled

        define_pickled(spec.experiment_pickle)
    engine = get_variant(spec.variant).load()
    log.emit("start", gc_thresholds=list(gc.get_threshold()), python=sys.version.split()[0],
             implementation=sys.implementation.name, started="forked" if forked else "cold")
    result = _run_workload(spec, engine, spec.probes, log, sample_file(spec.events_path),
                           phase_file(spec.events_path), blind=spec.blind)
    log.emit("result", **result)
    if spec.measure_overhead:
        log.emit("overhead", **_probe_overhead(spec, engine))


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


def main(expected_parent: int | None = None) -> int:
    """The trial whose spec is on stdin; `expected_parent`: the process that
    started it when that is not the run (a fork server, harness.fork_server)."""
    spec = TrialSpec(**json.load(sys.stdin))
    die_with_parent(spec.parent_pid if expected_parent is None else expected_parent)
    if spec.memory_limit_bytes is not None:
        limit_address_space(spec.memory_limit_bytes)
    with open(spec.events_path, "a", encoding="utf-8") as stream:
        log = EventLog(stream)
        try:
            run_trial(spec, log, forked=expected_parent is not None)
        except BaseException as error:  # recorded, then reported by exit status
            log.emit(
                "error",
                error=f"{type(error).__name__}: {error}".strip(),
                traceback=traceback.format_exc(),
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
