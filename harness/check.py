"""Evaluating an experiment's expectations on a finished run.

Each expectation is the analytic model's statement about one trial's
summary row: exact equality where the measurement is exact (tracemalloc's
numpy domain, with the GC off or a variant freed by reference counting),
stated inequalities where the GC schedule decides.

Claims about trials side by side (`Ordering`, `Trend`, defined with the
experiment in harness.experiment) are judged here too. A comparison whose
trials are not in the run (a variant not chosen, a parameter not swept) is
not judged.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Mapping

import pandas as pd

from harness.errors import UsageError
from harness.experiment import Expectation, Experiment, Ordering, Params, Ref, Trend

# The trial's own GC thresholds and, for an inferred model, its engine's
# containers per graph: recorded at run time, passed to the models.
THRESHOLD_COLUMNS = ("gc_threshold_gen0", "gc_threshold_gen1", "gc_threshold_gen2",
                     "graph_containers_per_op", "graph_containers_fixed")
RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, "==": operator.eq, ">=": operator.ge, ">": operator.gt,
}


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


@dataclass(frozen=True)
class ComparisonResult:
    """One pair of trials judged by an `Ordering` or a `Trend`."""

    trial: int
    other_trial: int
    variant: str
    params: dict[str, Any]
    expectation: Ordering | Trend
    measured: Any
    expected: Any
    passed: bool
    other: str  # how the other trial differs, e.g. "weakref" or "size=1000"

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        c = self.expectation
        metric = f"{c.metric}/{c.along}" if isinstance(c, Trend) and c.per_unit else c.metric
        within = f" within {c.tolerance:.0%}" if isinstance(c, Trend) and c.tolerance else ""
        return (
            f"{verdict} trial {self.trial} {self.variant} vs trial {self.other_trial} {self.other}: "
            f"{metric} {c.relation} {_fmt(self.expected)}{within} (measured {_fmt(self.measured)})"
            f" -- {c.description}"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{float(value):,.4f}"
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


def _as_written(param: Any, value: Any) -> Any:
    """A parameter value as the run wrote it: CSV reads "false" back as a
    boolean and "1" as a number, where the parameter is a string."""
    value = _native(value)
    if param.type is str and isinstance(value, bool):
        return "true" if value else "false"
    if param.type is str and value is not None and not isinstance(value, str):
        return str(value)
    return value


def _model_variant(row: pd.Series) -> str:
    """The model a trial was judged by, as recorded at run time. A run from
    before that column, or a trial with no model, is judged by its variant's
    name, for which only the built-in variants have a model: reading a run
    never imports the engine a variant names (a run directory is data)."""
    recorded = row.get("model_variant")
    if isinstance(recorded, str) and recorded:
        return recorded
    return str(row["variant"])


def check_summary(experiment: Experiment, summary: pd.DataFrame) -> list[CheckResult | ComparisonResult]:
    """Evaluate the expectations of every trial that completed, then the
    experiment's comparisons between them."""
    param_names = [p.name for p in experiment.params]
    results: list[CheckResult | ComparisonResult] = []
    records = []
    for _, row in summary.iterrows():
        if row.get("status") != "ok":
            continue
        try:
            params = Params({name: experiment.param(name).validate(_as_written(experiment.param(name), row.get(name)))
                             for name in param_names})
        except UsageError as error:
            raise UsageError(f"summary.csv, trial {row.get('trial')}: {error}") from None
        for name in THRESHOLD_COLUMNS:  # the trial's own GC thresholds, for models that use them
            if name in row and not pd.isna(row[name]):
                params[name] = int(row[name])
        record = {key: _native(value) for key, value in row.items()}
        records.append(record)
        for expectation in experiment.expectations(_model_variant(row), params):
            if not _measured(expectation, record):
                continue  # its probe was off in this run: nothing to judge
            results.append(
                CheckResult(
                    trial=int(row["trial"]),
                    variant=str(row["variant"]),
                    params={name: params[name] for name in param_names},
                    expectation=expectation,
                    measured=record.get(expectation.metric),
                    expected=expectation.expected_value(record),
                    passed=expectation.holds(record),
                )
            )
    for comparison in experiment.comparisons:
        if isinstance(comparison, Ordering):
            results.extend(_check_ordering(comparison, records, param_names))
        elif isinstance(comparison, Trend):
            results.extend(_check_trend(comparison, records, param_names))
        else:
            raise TypeError(f"{experiment.name}: a comparison must be an Ordering or a Trend, "
                            f"got {type(comparison).__name__}")
    return results


def _selected(record: dict[str, Any], selection: Mapping[str, Any]) -> bool:
    return all(record.get(key) == value for key, value in selection.items())


def _key(record: dict[str, Any], columns: list[str]) -> tuple:
    return tuple(record.get(column) for column in columns)


def _judge(relation: str, measured: Any, expected: Any) -> bool:
    if pd.isna(measured) or pd.isna(expected):
        return False
    return RELATIONS[relation](measured, expected)


def _check_ordering(ordering: Ordering, records: list[dict[str, Any]],
                    param_names: list[str]) -> list[ComparisonResult]:
    fixed = set(ordering.left) & set(ordering.right)
    shared = [name for name in ["variant", *param_names] if name not in fixed] + ["repeat"]
    rights = {}
    for record in records:
        if _selected(record, ordering.right):
            rights.setdefault(_key(record, shared), record)
    results = []
    for left in records:
        right = rights.get(_key(left, shared)) if _selected(left, ordering.left) else None
        if right is None or pd.isna(left.get(ordering.metric)) or pd.isna(right.get(ordering.metric)):
            continue
        measured, expected = left[ordering.metric], right[ordering.metric]
        results.append(ComparisonResult(
            trial=int(left["trial"]), other_trial=int(right["trial"]), variant=str(left["variant"]),
            params={name: left[name] for name in param_names}, expectation=ordering,
            measured=measured, expected=expected, passed=_judge(ordering.relation, measured, expected),
            other=", ".join(f"{k}={v}" if k != "variant" else str(v) for k, v in ordering.right.items()),
        ))
    return results


def _check_trend(trend: Trend, records: list[dict[str, Any]], param_names: list[str]) -> list[ComparisonResult]:
    shared = ["variant", *[n for n in param_names if n != trend.along], "repeat"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        if _selected(record, trend.select) and not pd.isna(record.get(trend.metric)):
            groups.setdefault(_key(record, shared), []).append(record)

    def value(record: dict[str, Any]) -> Any:
        if trend.per_unit:
            return Fraction(record[trend.metric]) / Fraction(record[trend.along])
        return record[trend.metric]

    results = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: r[trend.along])
        for previous, current in zip(ordered, ordered[1:]):
            measured, expected = value(current), value(previous)
            if trend.relation == "==" and trend.tolerance:
                passed = abs(measured - expected) <= trend.tolerance * abs(expected)
            else:
                passed = _judge(trend.relation, measured, expected)
            results.append(ComparisonResult(
                trial=int(current["trial"]), other_trial=int(previous["trial"]),
                variant=f"{current['variant']} {trend.along}={current[trend.along]}",
                params={name: current[name] for name in param_names}, expectation=trend,
                measured=measured, expected=expected, passed=passed,
                other=f"{trend.along}={previous[trend.along]}",
            ))
    return results
