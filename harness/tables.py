"""The result tables: tidy pandas DataFrames with stable column names.

Every table starts with the trial's identity: `experiment`, `variant`,
`repeat`, `trial`, then one column per experiment parameter. Then:

samples    one row per sample point: `sample` (0, 1, ... within the trial),
           `iteration` (-1 for the start sample), `phase` ("start", "end" of an
           iteration, or a workload's own point such as "backward"), `t_s`,
           `numpy_bytes`, `numpy_bytes_peak` (highest since the previous sample),
           `rss_bytes`, `live_variables`, `live_functions` (and `uss_bytes`
           with the uss probe). Empty where a probe was off or cannot see.
gc_events  one row per collection: `iteration`, `generation`, `collected`,
           `uncollectable`, `duration_s`.
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

IDENTITY = ("experiment", "variant", "repeat", "trial")
SAMPLE_COLUMNS = (
    "sample", "iteration", "phase", "t_s", "numpy_bytes", "numpy_bytes_peak",
    "rss_bytes", "live_variables", "live_functions",
)
GC_COLUMNS = ("iteration", "generation", "collected", "uncollectable", "duration_s")
TIMELINE_COLUMNS = ("t_s", "rss_bytes")
SUMMARY_COLUMNS = {
    "status": "ok, or failed / timeout / killed / interrupted",
    "error": "why the trial failed (empty when ok)",
    "iterations_completed": "end-of-iteration samples recorded",
    "numpy_bytes_final": "numpy-domain bytes at the last sample",
    "numpy_bytes_peak": "highest numpy-domain bytes during the trial",
    "bytes_per_iteration": "growth of numpy bytes per iteration between the first and last iteration ends",
    "rss_final_bytes": "RSS at the last sample",
    "rss_peak_bytes": "highest RSS seen by the rss probe or the sampled timeline",
    "sampled_rss_peak_bytes": "highest RSS in memory_profiler's timeline",
    "gc_collections": "collections during the workload, all generations",
    "gc_collections_gen0": "collections of generation 0",
    "gc_collections_gen1": "collections of generation 1",
    "gc_collections_gen2": "collections of generation 2",
    "gc_collected_objects": "objects the collections freed",
    "gc_uncollectable": "objects the collections found uncollectable",
    "live_variables_final": "engine Variables alive at the last sample",
    "live_functions_final": "engine Functions alive at the last sample",
    "expected_numpy_bytes_final": "the analytic model's bytes held at the end",
    "expected_numpy_bytes_peak": "the analytic model's peak bytes",
    "measured_over_expected": "numpy_bytes_final / expected_numpy_bytes_final",
    "peak_measured_over_expected": "numpy_bytes_peak / expected_numpy_bytes_peak",
    "workload_seconds": "the measured workload's time, probes included (the process's first run: cold pages)",
    "bare_workload_seconds": "the workload's time with no probe, run again after the measured run (median of repeats)",
    "overhead_all_probes": "time with every probe / bare_workload_seconds, both run after the measured run",
    # and overhead_<probe>: the workload's time with that probe alone / with none
}


@dataclass
class TrialOutcome:
    """What the parent learned of one trial from its event log and exit."""

    trial: int
    variant: str
    repeat: int
    params: dict[str, Any]
    status: str = "ok"
    error: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)
    gc_events: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] = field(default_factory=dict)


def _identity(experiment: Experiment, outcome: TrialOutcome) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        "variant": outcome.variant,
        "repeat": outcome.repeat,
        "trial": outcome.trial,
        **outcome.params,
    }


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(dtype="float64")
    extra = [c for c in frame.columns if c not in columns]
    return frame[columns + extra]


def _int_or_none(value: Any) -> int | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value)


def build_tables(experiment: Experiment, outcomes: list[TrialOutcome]) -> dict[str, pd.DataFrame]:
    param_names = [p.name for p in experiment.params]
    ident = list(IDENTITY) + param_names
    sample_rows, gc_rows, timeline_rows, record_rows, summary_rows = [], [], [], [], []
    for outcome in outcomes:
        identity = _identity(experiment, outcome)
        for n, sample in enumerate(outcome.samples):
            sample_rows.append({**identity, "sample": n, **sample})
        gc_rows.extend({**identity, **event} for event in outcome.gc_events)
        timeline_rows.extend({**identity, **point} for point in outcome.timeline)
        record_rows.extend({**identity, **record} for record in outcome.records)
        summary_rows.append({**identity, **summarize(experiment, outcome)})
    return {
        "samples": _frame(sample_rows, ident + list(SAMPLE_COLUMNS)),
        "gc_events": _frame(gc_rows, ident + list(GC_COLUMNS)),
        "timeline": _frame(timeline_rows, ident + list(TIMELINE_COLUMNS)),
        "records": _frame(record_rows, ident + ["iteration"]),
        "summary": _frame(summary_rows, ident + list(SUMMARY_COLUMNS)),
    }


def summarize(experiment: Experiment, outcome: TrialOutcome) -> dict[str, Any]:
    samples = pd.DataFrame(outcome.samples)
    events = pd.DataFrame(outcome.gc_events)
    row: dict[str, Any] = {"status": outcome.status, "error": outcome.error}

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

    generations = events["generation"] if "generation" in events else pd.Series(dtype="int64")
    row["gc_collections"] = len(events)
    for generation in (0, 1, 2):
        row[f"gc_collections_gen{generation}"] = int((generations == generation).sum())
    row["gc_collected_objects"] = int(events["collected"].sum()) if len(events) else 0
    row["gc_uncollectable"] = int(events["uncollectable"].sum()) if len(events) else 0
    for name in ("live_variables", "live_functions"):
        values = column(name)
        row[f"{name}_final"] = _int_or_none(values.iloc[-1]) if len(values) else None

    model = experiment.expected_for(outcome.variant, Params(outcome.params))
    row["expected_numpy_bytes_final"] = model.numpy_bytes_final
    row["expected_numpy_bytes_peak"] = model.numpy_bytes_peak
    row["measured_over_expected"] = _ratio(row["numpy_bytes_final"], model.numpy_bytes_final)
    row["peak_measured_over_expected"] = _ratio(row["numpy_bytes_peak"], model.numpy_bytes_peak)

    row["workload_seconds"] = outcome.result.get("workload_seconds")
    row["bare_workload_seconds"] = outcome.result.get("bare_workload_seconds")
    row["overhead_all_probes"] = outcome.result.get("overhead_all_probes")
    row.update({k: v for k, v in outcome.result.items() if k.startswith("overhead_")})
    return row


def _ratio(measured: float | None, expected: float | None) -> float | None:
    if measured is None or not expected:
        return None
    return measured / expected
