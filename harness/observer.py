"""Did the probes move the GC? Each measured trial against a blind twin.

`--verify-observer` runs, beside every trial of the plan, a twin with the
same experiment, variant, parameters and seed in its own fresh process, in
which no sample point reads anything (`TrialSpec.blind`): the workload runs
as it would with no probe at all. Both read the collector's totals and the
numpy bytes once, when the workload returns. If the probes moved the
collector, the collections, the objects they freed, gen-0's count or the
numpy-domain bytes differ between the two; each figure is compared exactly.
(Within a trial, every sample point also checks that it left gen-0's count
as it found it: `drifted_sample_points`.)

The findings are a table (`observer.csv`) and check lines; a difference is
a failed check, so the run's exit status says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.errors import UsageError
from harness.tables import TrialOutcome

OBSERVER_COLUMNS = ("trial", "variant", "figure", "measured", "reference", "passed")


@dataclass(frozen=True)
class ObserverResult:
    """One figure of one trial against its blind twin."""

    trial: int
    variant: str
    figure: str
    measured: Any
    reference: Any
    passed: bool

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} trial {self.trial} {self.variant}: observer -- {self.figure} "
                f"{_fmt(self.measured)} with the probes, {_fmt(self.reference)} with none")


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _figures(outcome: TrialOutcome) -> dict[str, Any]:
    result = outcome.result
    figures: dict[str, Any] = {}
    start, end = result.get("gc_at_start"), result.get("gc_at_end")
    if start and end:
        for key, label in (("collections", "collections by generation"),
                           ("collected", "objects collected by generation"),
                           ("uncollectable", "uncollectable by generation")):
            figures[label] = [e - s for s, e in zip(start[key], end[key])]
        figures["the collector's counts at the end"] = end["count"]
    if "numpy_bytes_at_end" in result:
        figures["numpy bytes at the end"] = result["numpy_bytes_at_end"]
        figures["numpy bytes at the peak"] = result["numpy_bytes_peak_overall"]
    return figures


def compare_with_reference(measured: TrialOutcome, reference: TrialOutcome | None) -> list[ObserverResult]:
    """Every figure both trials read at the end, exactly. A measured trial that
    did not finish gives no rows (its own failure says why); one whose twin did
    not finish, or that could not read the collector's state, gives a failing
    row: nothing judged is not a pass."""
    if measured.status != "ok":
        return []
    if reference is None or reference.status != "ok":
        status = "missing" if reference is None else f"{reference.status}: {reference.error}"
        return [ObserverResult(measured.trial, measured.variant, "the blind twin did not finish", status,
                               "ok", False)]
    observer = measured.result.get("observer") or {}
    if not observer.get("gc_state"):
        why = observer.get("gc_state_unavailable") or "unknown"
        return [ObserverResult(measured.trial, measured.variant, "the collector's state could not be read",
                               why, "readable", False)]
    ours, theirs = _figures(measured), _figures(reference)
    results = [
        ObserverResult(measured.trial, measured.variant, figure, value, theirs[figure], value == theirs[figure])
        for figure, value in ours.items() if figure in theirs
    ]
    drifted = measured.result.get("drifted_sample_points", 0)
    results.append(ObserverResult(measured.trial, measured.variant,
                                  "sample points that changed gen-0's count", drifted, 0, drifted == 0))
    return results


def observer_table(results: list[ObserverResult]) -> pd.DataFrame:
    rows = [{"trial": r.trial, "variant": r.variant, "figure": r.figure, "measured": _fmt(r.measured),
             "reference": _fmt(r.reference), "passed": r.passed} for r in results]
    return pd.DataFrame(rows, columns=list(OBSERVER_COLUMNS))


def results_from_table(table: pd.DataFrame, path: str = "observer.csv") -> list[ObserverResult]:
    """The stored findings of a run, for `check` (a run directory is data)."""
    missing = [c for c in OBSERVER_COLUMNS if c not in table]
    if missing:
        raise UsageError(f"{path} is corrupt: no {missing[0]!r} column")
    results = []
    for _, row in table.iterrows():
        passed = str(row["passed"]).strip()
        if passed not in ("True", "False"):
            raise UsageError(f"{path} is corrupt: 'passed' is {row['passed']!r}, not True or False")
        results.append(ObserverResult(int(row["trial"]), str(row["variant"]), str(row["figure"]), row["measured"],
                                      row["reference"], passed == "True"))
    return results
