"""The result tables: tidy pandas DataFrames with stable column names.

Every table starts with the trial's identity: `experiment`, `variant`,
`repeat`, `trial`, then one column per experiment parameter. Then:

samples    one row per sample point: `sample` (0, 1, ... within the trial),
           `iteration` (-1 for the start sample), `phase` ("start", "end" of an
           iteration, or a workload's own point such as "backward"), `t_s`,
           `numpy_bytes`, `numpy_bytes_peak` (highest since the previous sample),
           `rss_bytes`, `live_variables`, `live_functions`, `gc_count_gen0..2`
           (the collector's counts; and `uss_bytes` with the uss probe,
           `cycle_debt_bytes` with the cycle_debt probe: numpy bytes only
           unreachable cycles hold, what a full collection would free now).
           Empty where a probe was off or cannot see.
gc_events  one row per generation collected between two sample points:
           `iteration` and `phase` of the sample point that closed the interval
           (or "after the last sample"), `generation`, `collections`,
           `collected`, `uncollectable`.
timeline   the sampled probe's points: `t_s`, `rss_bytes`.
records    rows a workload records itself (`Workbench.record`): `iteration`
           and the workload's own columns, e.g. exp16's census of collected objects.
summary    one row per trial: see SUMMARY_COLUMNS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import pandas as pd

from harness.experiment import Experiment, Params

if TYPE_CHECKING:
    from harness.inference import ModelChoice

IDENTITY = ("experiment", "variant", "repeat", "trial")
SAMPLE_COLUMNS = (
    "sample", "iteration", "phase", "t_s", "numpy_bytes", "numpy_bytes_peak",
    "rss_bytes", "live_variables", "live_functions",
    "gc_count_gen0", "gc_count_gen1", "gc_count_gen2",
)
# Whole numbers that may be missing: nullable integers, so 3200000 stays
# 3200000 (not 3200000.0) when another trial's cell is empty.
INTEGER_SAMPLE_COLUMNS = ("numpy_bytes", "numpy_bytes_peak", "rss_bytes", "uss_bytes", "cycle_debt_bytes",
                          "live_variables",
                           "live_functions", "gc_count_gen0", "gc_count_gen1", "gc_count_gen2")
GC_COLUMNS = ("iteration", "phase", "generation", "collections", "collected", "uncollectable")
TIMELINE_COLUMNS = ("t_s", "rss_bytes")
AFTER_LAST_SAMPLE = "after the last sample"
SUMMARY_COLUMNS = {
    "status": "ok, or failed / timeout / killed / interrupted",
    "error": "why the trial failed (empty when ok)",
    "python": "the trial's interpreter version",
    "trial_start": "forked (from a pre-imported fork server, harness.fork_server) or cold (a new interpreter)",
    "gc_threshold_gen0": "gen-0's collection threshold in the trial (gc.get_threshold()[0])",
    "gc_threshold_gen1": "gen-1's threshold",
    "gc_threshold_gen2": "gen-2's threshold",
    "iterations_completed": "end-of-iteration samples recorded",
    "numpy_bytes_final": "numpy-domain bytes at the last sample (exact)",
    "numpy_bytes_peak": "highest numpy-domain bytes during the trial, between samples included (exact)",
    "bytes_per_iteration": "growth of numpy bytes per iteration between the first and last iteration ends (exact)",
    "rss_final_bytes": "RSS at the last sample (noisy: the allocator keeps freed memory)",
    "rss_peak_bytes": "highest RSS seen by the rss probe or the sampled timeline (noisy)",
    "sampled_rss_peak_bytes": "highest RSS in the sampled probe's timeline (noisy; a 5 ms poll)",
    "cycle_debt_final_bytes": "with the cycle_debt probe: numpy bytes held only by unreachable cycles at the "
                              "last sample, what a full collection would free then (exact)",
    "cycle_debt_peak_bytes": "the highest cycle debt at any sample point (exact)",
    "gc_collections": "collections during the workload, all generations (exact)",
    "gc_collections_gen0": "collections of generation 0 (exact)",
    "gc_collections_gen1": "collections of generation 1 (exact)",
    "gc_collections_gen2": "collections of generation 2 (exact)",
    "gc_collected_objects": "objects the collections freed (exact)",
    "gc_uncollectable": "objects the collections found uncollectable (exact)",
    "live_variables_final": "engine Variables alive at the last sample (exact)",
    "live_functions_final": "engine Functions alive at the last sample (exact)",
    "observer_neutral": "every sample point left the collector's count as the workload left it",
    "foreign_traced_bytes": "bytes still traced at the end in tracemalloc domains other than numpy's (an engine "
                            "calling PyTraceMalloc_Track itself): the numpy_bytes figures include them",
    "model_variant": "the built-in variant whose model judged the trial (recorded at run time, so reading "
                     "a run never imports an engine); empty: no model",
    "model_source": "where that model came from: built-in, declared (Variant.model_as), inferred by explain "
                    "(a user's engine, examined at plan time), or empty",
    "model_reason": "why that model: the engine's behaviour as explain observed it, or why there is none",
    "graph_containers_per_op": "for an inferred cyclic model: GC containers a collection frees per op of a "
                               "dropped graph, as measured for this engine (ours: 5)",
    "graph_containers_fixed": "and per graph beyond its ops (ours: 1, the leaf Variable)",
    "expected_numpy_bytes_final": "the analytic model's prediction of the bytes held at the end",
    "expected_numpy_bytes_peak": "the analytic model's prediction of the peak",
    "bound_numpy_bytes_final": "an upper bound on the bytes held at the end, where the model predicts no value "
                               "(strongref with the GC on: every graph built)",
    "bound_numpy_bytes_peak": "an upper bound on the peak, likewise",
    "measured_over_expected": "numpy_bytes_final / expected_numpy_bytes_final (never against a bound)",
    "peak_measured_over_expected": "numpy_bytes_peak / expected_numpy_bytes_peak",
    "workload_seconds": "the measured workload's time, probes included (the process's first run: cold pages)",
    "bare_workload_seconds": "with --overhead: the workload's time with no probe, run again (median of rounds)",
    "overhead_all_probes": "with --overhead: time with every probe / with none, median of interleaved rounds",
    "overhead_all_probes_iqr": "the interquartile range of those per-round ratios",
    # and overhead_<probe>, overhead_<probe>_iqr: that probe alone
}
# With --executor dask only, after the columns above: where each trial ran.
WORKER_COLUMNS = {
    "worker": "the host name of the Dask worker that ran the trial",
    "worker_address": "that worker's address at the scheduler (tcp://HOST:PORT)",
    "worker_memory_limit_bytes": "the worker's Dask memory_limit (empty: none), which the memory guard judged by",
    "worker_nthreads": "trials that worker runs at once (its threads)",
    "worker_python": "the Python version of the worker's own interpreter",
    "worker_numpy": "the numpy version on the worker",
    "worker_reruns": "times the scheduler ran the trial again after a worker holding it died (a scheduler "
                     "whose allowed-failures is above 0; never on the run's own LocalCluster)",
}
GC_SUMMARY_COLUMNS = ("gc_collections", "gc_collections_gen0", "gc_collections_gen1", "gc_collections_gen2",
                      "gc_collected_objects", "gc_uncollectable")


@dataclass
class TrialOutcome:
    """What the parent learned of one trial from its files and exit."""

    trial: int
    variant: str
    repeat: int
    params: dict[str, Any]
    status: str = "ok"
    error: str = ""
    probes: list[str] = field(default_factory=list)
    sample_rows: Any = None  # float64 array (rows, columns); None: read from samples_path
    samples_path: str | None = None  # the trial's sample file (harness.probes.sampler)
    sample_columns: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # points given here; a run's: timeline_chunks
    events_path: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] = field(default_factory=dict)
    # Where a Dask worker ran it (WORKER_COLUMNS, harness.dask_executor); empty for a local trial.
    worker: dict[str, Any] = field(default_factory=dict)

    def sample_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        """The trial's sample rows as tables of at most `rows` rows each, in order."""
        from harness.probes.sampler import iter_samples

        if self.sample_rows is not None:
            arrays: Iterable[np.ndarray] = (self.sample_rows[n:n + rows] for n in range(0, len(self.sample_rows), rows))
        elif self.samples_path is not None:
            arrays = iter_samples(Path(self.samples_path), [*self.sample_columns, "marker"], rows)
        else:
            arrays = ()
        for array in arrays:
            yield self._frame(array)

    def timeline_chunks(self) -> Iterator[list[dict[str, Any]]]:
        """The sampled probe's points, a batch at a time (the trial logs them in batches)."""
        if self.timeline:
            yield self.timeline
        if self.events_path is None or not Path(self.events_path).exists():
            return
        with open(self.events_path, encoding="utf-8") as stream:
            for line in stream:
                if line.startswith('{"event": "timeline"'):
                    try:
                        yield json.loads(line)["points"]
                    except json.JSONDecodeError:
                        return  # a line cut off by a kill: keep what came before

    def samples(self) -> pd.DataFrame:
        """The trial's sample rows, with phase names and whole numbers as
        integers (all in memory: for one trial's inspection, not a long run)."""
        frames = list(self.sample_chunks(1 << 20))
        return pd.concat(frames, ignore_index=True) if frames else self._frame(np.empty((0, len(self.sample_columns))))

    def _frame(self, rows: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=self.sample_columns)
        if "iteration" in frame:
            frame["iteration"] = frame["iteration"].astype("int64")
        if "phase" in frame:
            names = self.phases
            codes = frame["phase"].to_numpy(dtype=np.int64)
            if len(codes) and codes.max() < len(names):
                frame["phase"] = np.asarray(names, dtype=object)[codes]
            else:
                frame["phase"] = [names[c] if c < len(names) else f"phase {c}" for c in codes]
        for column in frame.columns:
            if column in INTEGER_SAMPLE_COLUMNS or column.startswith("gc_total_"):
                frame[column] = frame[column].round().astype("Int64")
        return frame


_GC_KINDS = ("collections", "collected", "uncollectable")


def _gc_totals(samples: pd.DataFrame) -> np.ndarray:
    """totals[k][row][g]: the running total of kind k for generation g at each sample point."""
    return np.stack([samples[[f"gc_total_{kind}_gen{g}" for g in range(3)]].to_numpy(dtype=np.int64)
                     for kind in _GC_KINDS])


def _gc_measured(samples: pd.DataFrame) -> bool:
    return ("gc_total_collections_gen0" in samples and not samples.empty
            and not samples["gc_total_collections_gen0"].isna().any())


def _events(totals: np.ndarray, iterations: list[int], phases: list[str]) -> list[dict[str, Any]]:
    """Rows for the intervals between consecutive columns of `totals` in
    which a generation was collected; interval n is closed by point n + 1."""
    deltas = np.diff(totals, axis=1)  # what each interval added; only the collected ones become rows
    events = []
    for interval, g in zip(*np.nonzero(deltas[0])):
        events.append({"iteration": int(iterations[interval + 1]), "phase": phases[interval + 1], "generation": int(g),
                       "collections": int(deltas[0, interval, g]), "collected": int(deltas[1, interval, g]),
                       "uncollectable": int(deltas[2, interval, g])})
    return events


def gc_events(samples: pd.DataFrame, at_end: dict[str, list[int]] | None) -> list[dict[str, Any]]:
    """One row per generation per interval between sample points in which it
    was collected, from the collector's running totals at each sample point
    (and at the workload's end, for collections after the last sample)."""
    stats = SampleStats()
    events = stats.add(samples)
    return events + stats.finish(at_end) if stats.gc_measured else []


class SampleStats:
    """What a trial's summary needs from its sample rows, gathered a chunk at
    a time (a long run's rows never need to be in memory together), and the
    GC events each chunk closes."""

    def __init__(self) -> None:
        self.rows = 0
        self.ends = 0
        self.last: dict[str, float] = {}  # the last reading of each column that had one
        self.numpy_peak: float | None = None
        self.first_end_bytes: float | None = None
        self.last_end_bytes: float | None = None
        self.end_bytes_readings = 0
        self.rss_peak: float | None = None
        self.debt_peak: float | None = None
        self.timeline_rss_peak: float | None = None
        self.gc_measured: bool | None = None  # None: no row yet
        self.gc_sums = {"collections": [0, 0, 0], "collected": 0, "uncollectable": 0}
        self._previous: tuple[np.ndarray, int, str] | None = None  # the last row's totals, iteration, phase

    def add(self, samples: pd.DataFrame) -> list[dict[str, Any]]:
        """Take one chunk of rows; return the GC events its rows close."""
        if samples.empty:
            return []
        self.rows += len(samples)
        for name in ("numpy_bytes", "rss_bytes", "live_variables", "live_functions", "cycle_debt_bytes"):
            values = _numbers(samples, name)
            if len(values):
                self.last[name] = values[-1]
        numpy_now, numpy_peak = _numbers(samples, "numpy_bytes"), _numbers(samples, "numpy_bytes_peak")
        self.numpy_peak = _max(self.numpy_peak, numpy_now, numpy_peak)
        self.rss_peak = _max(self.rss_peak, _numbers(samples, "rss_bytes"))
        self.debt_peak = _max(self.debt_peak, _numbers(samples, "cycle_debt_bytes"))
        ends = samples[samples["phase"] == "end"] if "phase" in samples else samples
        self.ends += len(ends)
        end_bytes = _numbers(ends, "numpy_bytes")
        if len(end_bytes):
            if self.first_end_bytes is None:
                self.first_end_bytes = end_bytes[0]
            self.last_end_bytes = end_bytes[-1]
            self.end_bytes_readings += len(end_bytes)
        return self._gc(samples)

    def _gc(self, samples: pd.DataFrame) -> list[dict[str, Any]]:
        if self.gc_measured is False or not _gc_measured(samples):
            self.gc_measured = False
            return []
        self.gc_measured = True
        totals = _gc_totals(samples)
        iterations, phases = list(samples["iteration"]), list(samples["phase"])
        if self._previous is not None:  # the interval that closes at this chunk's first row
            before, iteration, phase = self._previous
            totals = np.concatenate([before, totals], axis=1)
            iterations, phases = [iteration, *iterations], [phase, *phases]
        self._previous = (totals[:, -1:, :], iterations[-1], phases[-1])
        return self._counted(_events(totals, iterations, phases))

    def finish(self, at_end: dict[str, list[int]] | None) -> list[dict[str, Any]]:
        """The events after the last sample point, from the totals at the workload's end."""
        if not self.gc_measured or at_end is None or self._previous is None:
            return []
        before, iteration, _ = self._previous
        end = np.array([[at_end[kind]] for kind in _GC_KINDS], dtype=np.int64)
        return self._counted(_events(np.concatenate([before, end], axis=1), [iteration, iteration],
                                     [AFTER_LAST_SAMPLE, AFTER_LAST_SAMPLE]))

    def _counted(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            self.gc_sums["collections"][event["generation"]] += event["collections"]
            self.gc_sums["collected"] += event["collected"]
            self.gc_sums["uncollectable"] += event["uncollectable"]
        return events

    def add_timeline(self, points: list[dict[str, Any]]) -> None:
        if points:
            self.timeline_rss_peak = _max(self.timeline_rss_peak, np.array([p["rss_bytes"] for p in points], float))


def _numbers(samples: pd.DataFrame, name: str) -> np.ndarray:
    if name not in samples:
        return np.empty(0)
    values = pd.to_numeric(samples[name], errors="coerce").astype("float64").to_numpy()
    return values[~np.isnan(values)]


def _max(current: float | None, *arrays: np.ndarray) -> float | None:
    for values in arrays:
        if len(values):
            top = float(values.max())
            current = top if current is None else max(current, top)
    return current


def _identity(experiment: Experiment, outcome: TrialOutcome) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        "variant": outcome.variant,
        "repeat": outcome.repeat,
        "trial": outcome.trial,
        **outcome.params,
    }


def _int_or_none(value: Any) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value)


def trial_params(outcome: TrialOutcome, choice: "ModelChoice | None" = None) -> Params:
    """The trial's parameters, the GC thresholds it ran with and, for an engine
    whose model was inferred, its own containers per graph: what its model uses."""
    params = Params(outcome.params)
    thresholds = outcome.start.get("gc_thresholds") or []
    for g, threshold in enumerate(thresholds[:3]):
        params[f"gc_threshold_gen{g}"] = threshold
    if choice is not None and choice.containers:
        params["graph_containers_per_op"] = choice.containers["per_op"]
        params["graph_containers_fixed"] = choice.containers["fixed"]
    return params


def summary_frame(experiment: Experiment, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The summary table of a run's trials' summary rows: byte and count columns as nullable integers."""
    ident = list(IDENTITY) + [p.name for p in experiment.params]
    summary = pd.DataFrame(rows)
    for column in ident + list(SUMMARY_COLUMNS):
        if column not in summary:
            summary[column] = pd.Series(dtype="float64")
    summary = summary[ident + list(SUMMARY_COLUMNS) + [c for c in summary.columns
                                                       if c not in ident and c not in SUMMARY_COLUMNS]]
    return normalize_summary(summary)


def normalize_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Whole-number columns as nullable integers, as written and as read back."""
    for column in summary.columns:
        if column in GC_SUMMARY_COLUMNS or column.startswith("gc_threshold_") or (
                column.endswith(("_bytes", "_final", "_peak", "_completed"))
                and column not in ("peak_measured_over_expected",)):
            if pd.api.types.is_numeric_dtype(summary[column]) or summary[column].isna().all():
                summary[column] = pd.to_numeric(summary[column]).round().astype("Int64")
    return summary


def normalize_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Counts and bytes of a sample table as nullable integers, as written and as read back."""
    for column in samples.columns:
        if column in INTEGER_SAMPLE_COLUMNS and (pd.api.types.is_numeric_dtype(samples[column])
                                                  or samples[column].isna().all()):
            samples[column] = pd.to_numeric(samples[column]).round().astype("Int64")
    return samples


def trial_stats(outcome: TrialOutcome, chunk_rows: int = 1 << 20) -> SampleStats:
    """A trial's summary figures from its rows and timeline (for one trial; a
    run gathers them while it writes its tables, harness.table_writer)."""
    stats = SampleStats()
    for chunk in outcome.sample_chunks(chunk_rows):
        stats.add(chunk)
    stats.finish(outcome.result.get("gc_at_end") if "gc" in outcome.probes else None)
    for points in outcome.timeline_chunks():
        stats.add_timeline(points)
    return stats


def summarize(experiment: Experiment, outcome: TrialOutcome, stats: SampleStats | None = None,
              choice: "ModelChoice | None" = None) -> dict[str, Any]:
    """A trial's summary row; `choice` is the model that judges it (harness.inference:
    chosen at plan time; without one, only a built-in or declared model applies)."""
    stats = trial_stats(outcome) if stats is None else stats
    row: dict[str, Any] = {"status": outcome.status, "error": outcome.error,
                           "python": outcome.start.get("python"),
                           # "forked" from a fork server, or a "cold" new interpreter
                           "trial_start": outcome.start.get("started")}
    thresholds = list(outcome.start.get("gc_thresholds") or [None] * 3)
    for g in range(3):
        row[f"gc_threshold_gen{g}"] = thresholds[g] if g < len(thresholds) else None

    row["iterations_completed"] = stats.ends
    row["numpy_bytes_final"] = _int_or_none(stats.last.get("numpy_bytes"))
    row["numpy_bytes_peak"] = _int_or_none(stats.numpy_peak)
    row["bytes_per_iteration"] = (
        (stats.last_end_bytes - stats.first_end_bytes) / (stats.end_bytes_readings - 1)
        if stats.end_bytes_readings >= 2 else None
    )
    row["rss_final_bytes"] = _int_or_none(stats.last.get("rss_bytes"))
    peaks = [p for p in (stats.rss_peak, stats.timeline_rss_peak) if p is not None]
    row["rss_peak_bytes"] = _int_or_none(max(peaks)) if peaks else None
    row["sampled_rss_peak_bytes"] = _int_or_none(stats.timeline_rss_peak)
    row["cycle_debt_final_bytes"] = _int_or_none(stats.last.get("cycle_debt_bytes"))
    row["cycle_debt_peak_bytes"] = _int_or_none(stats.debt_peak)

    # GC figures only where the gc probe read the collector; otherwise empty, not 0.
    if "gc" in outcome.probes and stats.gc_measured:
        sums = stats.gc_sums
        for g in range(3):
            row[f"gc_collections_gen{g}"] = sums["collections"][g]
        row["gc_collections"] = sum(sums["collections"])
        row["gc_collected_objects"] = sums["collected"]
        row["gc_uncollectable"] = sums["uncollectable"]
    else:
        for name in GC_SUMMARY_COLUMNS:
            row[name] = None
    for name in ("live_variables", "live_functions"):
        row[f"{name}_final"] = _int_or_none(stats.last.get(name))
    observer = outcome.result.get("observer") or {}
    if outcome.result and observer.get("gc_state"):  # without the collector's state, not known
        row["observer_neutral"] = (not observer.get("probes_not_neutral")
                                   and outcome.result.get("drifted_sample_points", 0) == 0)
    else:
        row["observer_neutral"] = None

    foreign = outcome.result.get("foreign_tracemalloc_domains")
    row["foreign_traced_bytes"] = sum(foreign.values()) if foreign else (0 if outcome.result else None)

    if choice is None:
        from harness.inference import known

        choice = known(outcome.variant)
    row.update(choice.columns())
    params = trial_params(outcome, choice)
    model = experiment.expected(choice.variant or outcome.variant, params)
    if model.bound:
        row["expected_numpy_bytes_final"] = row["expected_numpy_bytes_peak"] = None
        row["bound_numpy_bytes_final"] = model.numpy_bytes_final
        row["bound_numpy_bytes_peak"] = model.numpy_bytes_peak
    else:
        row["expected_numpy_bytes_final"] = model.numpy_bytes_final
        row["expected_numpy_bytes_peak"] = model.numpy_bytes_peak
        row["bound_numpy_bytes_final"] = row["bound_numpy_bytes_peak"] = None
    row["measured_over_expected"] = _ratio(row["numpy_bytes_final"], row["expected_numpy_bytes_final"])
    row["peak_measured_over_expected"] = _ratio(row["numpy_bytes_peak"], row["expected_numpy_bytes_peak"])

    row["workload_seconds"] = outcome.result.get("workload_seconds")
    row["bare_workload_seconds"] = outcome.result.get("bare_workload_seconds")
    row["overhead_all_probes"] = outcome.result.get("overhead_all_probes")
    row["overhead_all_probes_iqr"] = outcome.result.get("overhead_all_probes_iqr")
    row.update({k: v for k, v in outcome.result.items() if k.startswith("overhead_")})
    row.update({k: outcome.worker.get(k) for k in WORKER_COLUMNS if outcome.worker})
    if experiment.recorded_figures is not None:
        row.update({name: value for name, value in experiment.recorded_figures(outcome.records).items()
                    if name not in row})  # never over a measured figure
    return row


def _ratio(measured: float | None, expected: float | None) -> float | None:
    if measured is None or not expected:
        return None
    return measured / expected
