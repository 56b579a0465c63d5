"""The result tables: tidy pandas DataFrames with stable column names.

Every table starts with the trial's identity: `experiment`, `variant`,
`repeat`, `trial`, then one column per experiment parameter. Then:

samples    one row per sample point: `sample` (0, 1, ... within the trial),
           `iteration` (-1 for the start sample), `phase` ("start", "end" of an
           iteration, or a workload's own point such as "backward"), `t_s`,
           `numpy_bytes`, `numpy_bytes_peak` (highest since the previous sample),
           `rss_bytes`, `live_variables`, `live_functions`, `gc_count_gen0..2`
           (the collector's counts; and `uss_bytes` with the uss probe).
           Empty where a probe was off or cannot see.
gc_events  one row per generation collected between two sample points:
           `iteration` and `phase` of the sample point that closed the interval
           (or "after the last sample"), `generation`, `collections`,
           `collected`, `uncollectable`.
timeline   memory_profiler's points: `t_s`, `rss_bytes`.
records    rows a workload records itself (`Workbench.record`): `iteration`
           and the workload's own columns, e.g. exp16's census of collected objects.
summary    one row per trial: see SUMMARY_COLUMNS.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.experiment import Experiment, Params
from harness.model import model_source

IDENTITY = ("experiment", "variant", "repeat", "trial")
SAMPLE_COLUMNS = (
    "sample", "iteration", "phase", "t_s", "numpy_bytes", "numpy_bytes_peak",
    "rss_bytes", "live_variables", "live_functions",
    "gc_count_gen0", "gc_count_gen1", "gc_count_gen2",
)
# Whole numbers that may be missing: nullable integers, so 3200000 stays
# 3200000 (not 3200000.0) when another trial's cell is empty.
_INTEGER_SAMPLE_COLUMNS = ("numpy_bytes", "numpy_bytes_peak", "rss_bytes", "uss_bytes", "live_variables",
                           "live_functions", "gc_count_gen0", "gc_count_gen1", "gc_count_gen2")
GC_COLUMNS = ("iteration", "phase", "generation", "collections", "collected", "uncollectable")
TIMELINE_COLUMNS = ("t_s", "rss_bytes")
AFTER_LAST_SAMPLE = "after the last sample"
SUMMARY_COLUMNS = {
    "status": "ok, or failed / timeout / killed / interrupted",
    "error": "why the trial failed (empty when ok)",
    "python": "the trial's interpreter version",
    "gc_threshold_gen0": "gen-0's collection threshold in the trial (gc.get_threshold()[0])",
    "gc_threshold_gen1": "gen-1's threshold",
    "gc_threshold_gen2": "gen-2's threshold",
    "iterations_completed": "end-of-iteration samples recorded",
    "numpy_bytes_final": "numpy-domain bytes at the last sample (exact)",
    "numpy_bytes_peak": "highest numpy-domain bytes during the trial, between samples included (exact)",
    "bytes_per_iteration": "growth of numpy bytes per iteration between the first and last iteration ends (exact)",
    "rss_final_bytes": "RSS at the last sample (noisy: the allocator keeps freed memory)",
    "rss_peak_bytes": "highest RSS seen by the rss probe or the sampled timeline (noisy)",
    "sampled_rss_peak_bytes": "highest RSS in memory_profiler's timeline (noisy; a 5 ms poll)",
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
    "model_source": "where that model came from: built-in, declared (Variant.model_as), or empty",
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
    sample_rows: Any = None  # float64 array (rows, columns), see harness.probes.sampler
    sample_columns: list[str] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] = field(default_factory=dict)

    def samples(self) -> pd.DataFrame:
        """The trial's sample rows, with phase names and whole numbers as integers."""
        rows = self.sample_rows if self.sample_rows is not None else np.empty((0, len(self.sample_columns)))
        frame = pd.DataFrame(rows, columns=self.sample_columns)
        if "iteration" in frame:
            frame["iteration"] = frame["iteration"].astype("int64")
        if "phase" in frame:
            names = self.phases
            frame["phase"] = [names[c] if c < len(names) else f"phase {c}" for c in frame["phase"].astype(int)]
        for column in frame.columns:
            if column in _INTEGER_SAMPLE_COLUMNS or column.startswith("gc_total_"):
                frame[column] = frame[column].round().astype("Int64")
        return frame


def gc_events(samples: pd.DataFrame, at_end: dict[str, list[int]] | None) -> list[dict[str, Any]]:
    """One row per generation per interval between sample points in which it
    was collected, from the collector's running totals at each sample point
    (and at the workload's end, for collections after the last sample)."""
    if ("gc_total_collections_gen0" not in samples or samples.empty
            or samples["gc_total_collections_gen0"].isna().any()):
        return []  # not measured: the gc probe off, or the collector's state not readable
    kinds = ("collections", "collected", "uncollectable")
    # totals[k][row][g]: the running total of kind k for generation g at each sample point
    totals = np.stack([samples[[f"gc_total_{kind}_gen{g}" for g in range(3)]].to_numpy(dtype=np.int64)
                       for kind in kinds])
    iterations, phases = list(samples["iteration"]), list(samples["phase"])
    if at_end is not None:
        end = np.array([[at_end[kind]] for kind in kinds], dtype=np.int64)
        totals = np.concatenate([totals, end], axis=1)
        iterations.append(iterations[-1])
        phases.append(AFTER_LAST_SAMPLE)
    deltas = np.diff(totals, axis=1)  # what each interval added; only the collected ones become rows
    events = []
    for interval, g in zip(*np.nonzero(deltas[0])):
        events.append({"iteration": int(iterations[interval + 1]), "phase": phases[interval + 1], "generation": int(g),
                       "collections": int(deltas[0, interval, g]), "collected": int(deltas[1, interval, g]),
                       "uncollectable": int(deltas[2, interval, g])})
    return events


def _identity(experiment: Experiment, outcome: TrialOutcome) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        "variant": outcome.variant,
        "repeat": outcome.repeat,
        "trial": outcome.trial,
        **outcome.params,
    }


def _frame(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype="float64")
    extra = [c for c in frame.columns if c not in columns]
    return frame[columns + extra]


def _rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def _int_or_none(value: Any) -> int | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value)


def trial_params(outcome: TrialOutcome) -> Params:
    """The trial's parameters and the GC thresholds it ran with, for its model."""
    params = Params(outcome.params)
    thresholds = outcome.start.get("gc_thresholds") or []
    for g, threshold in enumerate(thresholds[:3]):
        params[f"gc_threshold_gen{g}"] = threshold
    return params


def build_tables(experiment: Experiment, outcomes: list[TrialOutcome]) -> dict[str, pd.DataFrame]:
    param_names = [p.name for p in experiment.params]
    ident = list(IDENTITY) + param_names
    sample_frames, gc_frames, timeline_frames, record_frames, summary_rows = [], [], [], [], []
    for outcome in outcomes:
        identity = _identity(experiment, outcome)
        samples = outcome.samples()
        at_end = outcome.result.get("gc_at_end") if "gc" in outcome.probes else None
        events = gc_events(samples, at_end)
        summary_rows.append({**identity, **summarize(experiment, outcome, samples, events)})
        shown = samples[[c for c in samples.columns if not c.startswith("gc_total_")]]
        shown.insert(0, "sample", range(len(shown)))
        sample_frames.append(shown.assign(**identity)[list(identity) + list(shown.columns)])
        gc_frames.append(_rows([{**identity, **event} for event in events]))
        timeline_frames.append(_rows([{**identity, **point} for point in outcome.timeline]))
        record_frames.append(_rows([{**identity, **record} for record in outcome.records]))
    summary = _frame([_rows(summary_rows)], ident + list(SUMMARY_COLUMNS))
    for column in summary.columns:
        if column in GC_SUMMARY_COLUMNS or (column.endswith(("_bytes", "_final", "_peak", "_completed"))
                                            and column not in ("peak_measured_over_expected",)):
            if pd.api.types.is_numeric_dtype(summary[column]) or summary[column].isna().all():
                summary[column] = pd.to_numeric(summary[column]).round().astype("Int64")
    return {
        "samples": _frame(sample_frames, ident + list(SAMPLE_COLUMNS)),
        "gc_events": _frame(gc_frames, ident + list(GC_COLUMNS)),
        "timeline": _frame(timeline_frames, ident + list(TIMELINE_COLUMNS)),
        "records": _frame(record_frames, ident + ["iteration"]),
        "summary": summary,
    }


def summarize(experiment: Experiment, outcome: TrialOutcome, samples: pd.DataFrame | None = None,
              events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    samples = outcome.samples() if samples is None else samples
    row: dict[str, Any] = {"status": outcome.status, "error": outcome.error,
                           "python": outcome.start.get("python")}
    thresholds = list(outcome.start.get("gc_thresholds") or [None] * 3)
    for g in range(3):
        row[f"gc_threshold_gen{g}"] = thresholds[g] if g < len(thresholds) else None

    def column(name: str) -> pd.Series:
        if name in samples:
            return pd.to_numeric(samples[name], errors="coerce").dropna()
        return pd.Series(dtype="float64")

    ends = samples[samples["phase"] == "end"] if "phase" in samples else samples
    row["iterations_completed"] = len(ends)
    numpy_now, numpy_peak = column("numpy_bytes"), column("numpy_bytes_peak")
    row["numpy_bytes_final"] = _int_or_none(numpy_now.iloc[-1]) if len(numpy_now) else None
    peaks = pd.concat([numpy_now, numpy_peak])
    row["numpy_bytes_peak"] = _int_or_none(peaks.max()) if len(peaks) else None
    end_bytes = pd.to_numeric(ends.get("numpy_bytes", pd.Series(dtype="float64")), errors="coerce").dropna()
    row["bytes_per_iteration"] = (
        (end_bytes.iloc[-1] - end_bytes.iloc[0]) / (len(end_bytes) - 1) if len(end_bytes) >= 2 else None
    )
    rss = column("rss_bytes")
    timeline_rss = pd.Series([p["rss_bytes"] for p in outcome.timeline], dtype="float64")
    row["rss_final_bytes"] = _int_or_none(rss.iloc[-1]) if len(rss) else None
    all_rss = pd.concat([rss, timeline_rss])
    row["rss_peak_bytes"] = _int_or_none(all_rss.max()) if len(all_rss) else None
    row["sampled_rss_peak_bytes"] = _int_or_none(timeline_rss.max()) if len(timeline_rss) else None

    # GC figures only where the gc probe read the collector; otherwise empty, not 0.
    measured_gc = ("gc" in outcome.probes and "gc_total_collections_gen0" in samples and len(samples) > 0
                   and not samples["gc_total_collections_gen0"].isna().any())
    if measured_gc:
        events = gc_events(samples, outcome.result.get("gc_at_end")) if events is None else events
        for g in range(3):
            row[f"gc_collections_gen{g}"] = sum(e["collections"] for e in events if e["generation"] == g)
        row["gc_collections"] = sum(e["collections"] for e in events)
        row["gc_collected_objects"] = sum(e["collected"] for e in events)
        row["gc_uncollectable"] = sum(e["uncollectable"] for e in events)
    else:
        for name in GC_SUMMARY_COLUMNS:
            row[name] = None
    for name in ("live_variables", "live_functions"):
        values = column(name)
        row[f"{name}_final"] = _int_or_none(values.iloc[-1]) if len(values) else None
    observer = outcome.result.get("observer") or {}
    if outcome.result and observer.get("gc_state"):  # without the collector's state, not known
        row["observer_neutral"] = (not observer.get("probes_not_neutral")
                                   and outcome.result.get("drifted_sample_points", 0) == 0)
    else:
        row["observer_neutral"] = None

    foreign = outcome.result.get("foreign_tracemalloc_domains")
    row["foreign_traced_bytes"] = sum(foreign.values()) if foreign else (0 if outcome.result else None)

    model_variant, source = model_source(outcome.variant)
    row["model_variant"] = model_variant if source else None
    row["model_source"] = source
    model = experiment.expected(model_variant, trial_params(outcome))
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
    return row


def _ratio(measured: float | None, expected: float | None) -> float | None:
    if measured is None or not expected:
        return None
    return measured / expected
