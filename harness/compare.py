"""Regression between two runs: a baseline and a current run of the same experiment.

Trials are matched by variant and parameter values (repeats of one match
are pooled). Each metric of the summary table is judged by what kind of
measurement it is:

exact   numpy-domain bytes (`numpy_bytes_final`, `numpy_bytes_peak`,
        `bytes_per_iteration`) and `iterations_completed`, always; GC
        counts and the census of live Variables/Functions when the trial
        ran with the GC off. tracemalloc's numpy domain counts array
        buffers to the byte and a trial starts from a frozen, just-collected
        heap, so these repeat exactly: any difference fails, a rise as a
        REGRESSION, a fall as CHANGED (the baseline no longer describes the
        engine; refresh it on purpose).
noisy   RSS (`rss_*`, `sampled_rss_peak_bytes`, `uss_*`), and GC counts and
        census with the GC on (collections fire on the count of every
        container allocated, the harness's own included). A rise beyond the
        relative tolerance is a REGRESSION; a fall is never one.
time    `*_seconds` and probe `overhead_*`: shown with the same tolerance
        as "slower"/"faster", never failing the comparison -- time on a
        shared machine is not a memory regression, and speed is measured by
        the benchmark scripts.

Two runs are not comparable (exit 2, nothing judged) when they are of
different experiments, Python implementations or minor versions, or GC
thresholds, or when no trial of one matches a trial of the other. Other
differences are warnings: the Python patch version and probes; a different
platform, machine, numpy version or allocator setting makes RSS a property
of the machine, so RSS is then shown but not judged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UsageError
from harness.results import read_meta, read_table

DEFAULT_TOLERANCE = 0.10
EXIT_OK, EXIT_REGRESSION, EXIT_NOT_COMPARABLE = 0, 1, 2

ALWAYS_EXACT = ("iterations_completed", "numpy_bytes_final", "numpy_bytes_peak", "bytes_per_iteration")
EXACT_WITH_GC_OFF = (
    "gc_collections", "gc_collections_gen0", "gc_collections_gen1", "gc_collections_gen2",
    "gc_collected_objects", "gc_uncollectable", "live_variables_final", "live_functions_final",
)
IDENTITY = ("experiment", "variant", "repeat", "trial")

EXACT, NOISY, TIME = "exact", "noisy", "time"
# Verdicts; the first two fail a comparison.
REGRESSION, CHANGED = "REGRESSION", "CHANGED"
OK, IMPROVED, SLOWER, FASTER, NOT_JUDGED, NOT_MEASURED = (
    "ok", "improved", "slower", "faster", "not judged", "not measured",
)
FAILING = (REGRESSION, CHANGED)


@dataclass(frozen=True)
class ComparedRun:
    """What compare reads of a run or a baseline: its metadata and summary table."""

    path: Path
    meta: dict[str, Any]
    summary: pd.DataFrame

    @property
    def param_names(self) -> list[str]:
        return list(self.meta.get("params", {}))


@dataclass(frozen=True)
class Row:
    trial: str
    metric: str
    kind: str
    baseline: Any
    current: Any
    verdict: str

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING


@dataclass
class Comparison:
    baseline: ComparedRun
    current: ComparedRun
    tolerance: float
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.failed]

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_OK


class NotComparable(UsageError):
    """The two runs measure different things; comparing them would judge nothing."""


def read_compared(path: Path | str, experiment: str | None = None) -> ComparedRun:
    """A run directory or a baseline directory; given the baselines' root
    (one sub-directory per experiment), the one for `experiment`."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory")
    if not (path / "meta.json").is_file() and experiment and (path / experiment / "meta.json").is_file():
        path = path / experiment
    return ComparedRun(path, read_meta(path), read_table(path, "summary"))


def metric_kind(metric: str, gc_off: bool) -> str | None:
    if metric in ALWAYS_EXACT:
        return EXACT
    if metric in EXACT_WITH_GC_OFF:
        return EXACT if gc_off else NOISY
    if metric.startswith(("rss_", "uss_", "sampled_rss")):
        return NOISY
    if metric.endswith("_seconds") or metric.startswith("overhead_"):
        return TIME
    return None  # identity, parameters, status, the analytic model: not measurements


def _version(meta: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(meta.get("python", "")).split("."))


def _trial_thresholds(meta: dict[str, Any]) -> list[Any]:
    # What the trials ran with, as recorded by each trial; the parent's otherwise.
    recorded = meta.get("trial_gc_thresholds") or [meta.get("gc_thresholds")]
    return [list(t) if t is not None else None for t in recorded]


def comparability(baseline: ComparedRun, current: ComparedRun) -> tuple[list[str], list[str], bool]:
    """(reasons the runs are not comparable, warnings, whether RSS can be judged)."""
    b, c = baseline.meta, current.meta
    problems: list[str] = []
    if b["experiment"] != c["experiment"]:
        problems.append(f"experiment {b['experiment']} (baseline) vs {c['experiment']} (current)")
    if b.get("python_implementation") != c.get("python_implementation"):
        problems.append(f"Python implementation {b.get('python_implementation')} (baseline) "
                        f"vs {c.get('python_implementation')} (current)")
    if _version(b)[:2] != _version(c)[:2]:
        problems.append(f"Python {b.get('python')} (baseline) vs {c.get('python')} (current)")
    if _trial_thresholds(b) != _trial_thresholds(c):
        problems.append(f"GC thresholds {_trial_thresholds(b)} (baseline) vs {_trial_thresholds(c)} (current)")

    warnings: list[str] = []
    if not problems and b.get("python") != c.get("python"):
        warnings.append(f"Python {b.get('python')} (baseline) vs {c.get('python')} (current)")
    if b.get("probes") != c.get("probes"):
        warnings.append(f"probes {b.get('probes')} (baseline) vs {c.get('probes')} (current)")
    machine_keys = {
        "platform": lambda m: m.get("platform"),
        "machine": lambda m: m.get("machine"),
        "package versions": lambda m: m.get("versions"),  # all imported by every trial
        "allocator environment": lambda m: m.get("allocator_env"),
        "trial environment": lambda m: m.get("trial_env"),
        "malloc_trim": lambda m: m.get("malloc_trim"),
    }
    machine_diffs = [f"{name} {get(b)!r} vs {get(c)!r}" for name, get in machine_keys.items() if get(b) != get(c)]
    if machine_diffs:
        warnings.append("RSS not judged, it depends on the machine: " + "; ".join(machine_diffs))
    return problems, warnings, not machine_diffs


def _native(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _trial_groups(run: ComparedRun) -> dict[tuple, pd.DataFrame]:
    keys = ["variant", *[p for p in run.param_names if p in run.summary]]
    if run.summary.empty or "variant" not in run.summary:
        return {}
    groups = {}
    for values, group in run.summary.groupby(keys, dropna=False, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        groups[tuple(zip(keys, map(_native, values)))] = group
    return groups


def _label(key: tuple, varying: set[str]) -> str:
    variant = dict(key)["variant"]
    shown = [f"{name}={value}" for name, value in key if name in varying]
    return " ".join([variant, *shown])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pooled(group: pd.DataFrame, metric: str, kind: str) -> Any:
    """One value for the repeats of a trial: exact metrics must agree, noisy ones pool by median."""
    values = pd.to_numeric(group[metric], errors="coerce").dropna() if metric in group else pd.Series(dtype=float)
    if values.empty:
        return None
    if kind == EXACT:
        distinct = sorted(set(values))
        return _native(distinct[0]) if len(distinct) == 1 else ("varies", _native(distinct[0]), _native(distinct[-1]))
    return _native(values.median())


def _judge(kind: str, base: Any, cur: Any, tolerance: float, rss_judged: bool, metric: str) -> str:
    if _missing(base) or _missing(cur):
        return NOT_MEASURED
    if isinstance(cur, tuple):  # an exact metric that differs between repeats of one run
        return REGRESSION
    if isinstance(base, tuple):
        return CHANGED
    if kind == EXACT:
        if cur == base:
            return OK
        return REGRESSION if cur > base else CHANGED
    if kind == NOISY and metric.startswith(("rss_", "uss_", "sampled_rss")) and not rss_judged:
        return NOT_JUDGED
    limit = abs(base) * tolerance
    if cur > base + limit:
        return SLOWER if kind == TIME else REGRESSION
    if cur < base - limit:
        return FASTER if kind == TIME else IMPROVED
    return OK


def compare(baseline: Path | str, current: Path | str, tolerance: float | None = None) -> Comparison:
    """Compare two runs (or a run and a baseline); raises NotComparable when they cannot be."""
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise UsageError(f"--tolerance must be a fraction of at least 0 (0.1 is 10%), got {tolerance!r}")
    cur = read_compared(current)
    base = read_compared(baseline, cur.meta["experiment"])
    problems, warnings, rss_judged = comparability(base, cur)
    base_groups, cur_groups = _trial_groups(base), _trial_groups(cur)
    matched = [key for key in base_groups if key in cur_groups]
    if not problems and not matched:
        differ = [f"{name} {base.meta['params'].get(name)!r} (baseline) vs {cur.meta['params'].get(name)!r} (current)"
                  for name in dict.fromkeys(base.param_names + cur.param_names)
                  if base.meta["params"].get(name) != cur.meta["params"].get(name)]
        detail = "; ".join(differ) if differ else "variants " + ", ".join(
            sorted({dict(k)["variant"] for k in base_groups})) + " vs " + ", ".join(
            sorted({dict(k)["variant"] for k in cur_groups}))
        problems.append(f"no trial matches by variant and parameters: {detail}")
    if problems:
        raise NotComparable(f"{base.path} and {cur.path} are not comparable: " + "; ".join(problems))

    result = Comparison(base, cur, tolerance, warnings=warnings)
    # Trials are labelled by variant and the parameters either run swept.
    varying = {name for run in (base, cur) for name, value in run.meta["params"].items() if isinstance(value, list)}
    for key in base_groups:
        if key not in cur_groups:
            result.warnings.append(f"baseline trial {_label(key, varying)} is not in the current run")
    for key in cur_groups:
        if key not in base_groups:
            result.warnings.append(f"current trial {_label(key, varying)} is not in the baseline")
    for key in matched:
        result.rows.extend(_compare_trial(key, base_groups[key], cur_groups[key], _label(key, varying),
                                          tolerance, rss_judged, result.warnings))
    return result


def _compare_trial(key: tuple, base: pd.DataFrame, cur: pd.DataFrame, label: str, tolerance: float,
                   rss_judged: bool, warnings: list[str]) -> list[Row]:
    base_failed = _failed_statuses(base)
    if base_failed:
        warnings.append(f"baseline trial {label} did not finish ({base_failed}): not compared")
        return []
    rows = []
    cur_failed = _failed_statuses(cur)
    if cur_failed:
        rows.append(Row(label, "status", EXACT, "ok", cur_failed, REGRESSION))
    gc_off = dict(key).get("gc") == "off"
    for metric in dict.fromkeys([*base.columns, *cur.columns]):
        kind = metric_kind(metric, gc_off)
        if kind is None:
            continue
        b, c = _pooled(base, metric, kind), _pooled(cur, metric, kind)
        if _missing(b) and _missing(c):
            continue
        rows.append(Row(label, metric, kind, b, c, _judge(kind, b, c, tolerance, rss_judged, metric)))
    return rows


def _failed_statuses(group: pd.DataFrame) -> str:
    statuses = [str(s) for s in group.get("status", pd.Series(dtype=str)).fillna("ok") if str(s) != "ok"]
    if not statuses:
        return ""
    errors = [str(e) for e in group.get("error", pd.Series(dtype=str)).dropna() if str(e)]
    return ", ".join(statuses) + (f": {errors[0]}" if errors else "")


def _fmt(value: Any) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, tuple):
        return f"{_fmt(value[1])}..{_fmt(value[2])} (varies)"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _change(row: Row) -> str:
    b, c = row.baseline, row.current
    if not all(isinstance(v, (int, float)) and not _missing(v) for v in (b, c)):
        return ""
    relative = f"{(c - b) / b:+.1%}" if b else ("from 0" if c else "+0.0%")
    if row.kind == TIME:
        return relative
    difference = c - b
    absolute = f"{difference:+,}" if isinstance(difference, int) else f"{difference:+,.4g}"
    return f"{absolute} ({relative})"


def format_table(comparison: Comparison) -> str:
    table = pd.DataFrame(
        [{"trial": r.trial, "metric": r.metric, "kind": r.kind, "baseline": _fmt(r.baseline),
          "current": _fmt(r.current), "change": _change(r), "verdict": r.verdict} for r in comparison.rows],
        columns=["trial", "metric", "kind", "baseline", "current", "change", "verdict"],
    )
    for name in ("trial", "metric", "verdict"):  # words read best left-aligned, numbers right
        width = max([len(name), *table[name].str.len()])
        table[name] = table[name].str.ljust(width)
        table = table.rename(columns={name: name.ljust(width)})
    with pd.option_context("display.width", 250, "display.max_colwidth", 80):
        return table.to_string(index=False)


def report(comparison: Comparison) -> str:
    b, c = comparison.baseline, comparison.current
    lines = [
        f"compare {b.meta['experiment']}: tolerance {comparison.tolerance:.0%} for noisy metrics (RSS, time)",
        f"  baseline {b.path}  (python {b.meta.get('python')}, commit {str(b.meta.get('git_commit'))[:10]})",
        f"  current  {c.path}  (python {c.meta.get('python')}, commit {str(c.meta.get('git_commit'))[:10]})",
    ]
    lines += [f"warning: {w}" for w in comparison.warnings]
    lines.append(format_table(comparison))
    failed = comparison.regressions
    trials = len({r.trial for r in comparison.rows})
    if failed:
        names = ", ".join(dict.fromkeys(f"{r.trial} {r.metric}" for r in failed))
        lines.append(f"REGRESSION: {len(failed)} of {len(comparison.rows)} metrics on {trials} trials failed: {names}")
        if any(r.verdict == CHANGED for r in failed):
            lines.append("(CHANGED: an exact metric fell; if that is intended, refresh the baseline: "
                         "python -m harness.baselines refresh)")
    else:
        lines.append(f"PASS: {len(comparison.rows)} metrics on {trials} trials, no regression")
    return "\n".join(lines)


def compare_runs(baseline: Path, current: Path, tolerance: float | None) -> int:
    """`python -m harness compare A B`: print the comparison; 0 pass, 1 regression,
    2 not comparable (one line on stderr, raised as a UsageError)."""
    comparison = compare(baseline, current, tolerance)
    print(report(comparison))
    return comparison.exit_code
