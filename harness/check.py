"""Evaluating an experiment's expectations on a finished run.

Each expectation is the analytic model's statement about one trial's
summary row: exact equality where the measurement is exact (tracemalloc's
numpy domain, with the GC off or a variant freed by reference counting),
stated inequalities where the GC schedule decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.experiment import Expectation, Experiment, Params, Ref


@dataclass(frozen=True)
class CheckResult:
    trial: int
    variant: str
    params: dict[str, Any]
    expectation: Expectation
    measured: Any
    expected: Any
    passed: bool

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{verdict} trial {self.trial} {self.variant}: {self.expectation.metric} "
            f"{self.expectation.relation} {_fmt(self.expected)} (measured {_fmt(self.measured)})"
            f" -- {self.expectation.description}"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _measured(expectation: Expectation, record: dict[str, Any]) -> bool:
    columns = [expectation.metric]
    if isinstance(expectation.expected, Ref):
        columns.append(expectation.expected.column)
    return all(not pd.isna(record.get(column)) for column in columns)


def check_summary(experiment: Experiment, summary: pd.DataFrame) -> list[CheckResult]:
    """Evaluate the expectations of every trial that completed."""
    param_names = [p.name for p in experiment.params]
    results: list[CheckResult] = []
    for _, row in summary.iterrows():
        if row.get("status") != "ok":
            continue
        params = Params({name: _native(row[name]) for name in param_names})
        record = {key: _native(value) for key, value in row.items()}
        for expectation in experiment.expectations(str(row["variant"]), params):
            if not _measured(expectation, record):
                continue  # its probe was off in this run: nothing to judge
            results.append(
                CheckResult(
                    trial=int(row["trial"]),
                    variant=str(row["variant"]),
                    params=dict(params),
                    expectation=expectation,
                    measured=record.get(expectation.metric),
                    expected=expectation.expected_value(record),
                    passed=expectation.holds(record),
                )
            )
    return results
