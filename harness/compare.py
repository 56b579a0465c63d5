"""Regression between two runs: a baseline and a current run of the same experiment.

Trials are matched by variant and parameter values; the repeats of a trial
are its sample. Each metric of the summary table is judged by what kind of
measurement it is:

exact   numpy-domain bytes (`numpy_bytes_final`, `numpy_bytes_peak`,
        `bytes_per_iteration`), `iterations_completed`, and -- see
        GC_COUNTS_EXACT_WITH_GC_ON -- the GC counts (`gc_collections*`,
        `gc_collected_objects`, `gc_uncollectable`) and the census of live
        Variables/Functions (`live_*_final`). tracemalloc's numpy domain
        counts array buffers to the byte and a trial starts from a frozen,
        just-collected heap, so these repeat exactly: any difference fails, a
        rise as a REGRESSION, a fall as CHANGED (the baseline no longer
        describes the engine; refresh it on purpose), and so does a value
        that differs between the repeats of one run.
noisy   RSS (`rss_*`, `sampled_rss_*`, `uss_*`). Judged as asv does: a
        one-sided Mann-Whitney U test over the repeats of each side plus a
        minimum factor. A REGRESSION needs both: the current repeats are
        significantly larger (p < alpha, default 0.05) *and* the ratio of
        the medians (current / baseline) exceeds 1 + tolerance (default
        1.10). Symmetrically, significantly smaller with a ratio below
        1 / (1 + tolerance) is "improved". When there are too few repeats on
        a side for the exact test to reach p < alpha at all (1 vs 1, 2 vs 2,
        3 vs 3 at 0.05), the row is "not judged", saying how many repeats
        would do; there is no fallback threshold.
time    `*_seconds` and probe `overhead_*`: the same test and factor, shown
        as "slower"/"faster", never failing the comparison -- time on a
        shared machine is not a memory regression, and speed is measured by
        the benchmark scripts.

A metric empty on one side (NaN in the CSV: the probe was off, or cannot
see the engine) is "not measured", never a pass or a fail.

Two runs are not comparable (exit 2, nothing judged) when they are of
different experiments, Python implementations or minor versions, or GC
thresholds, or when no trial of one matches a trial of the other. Nothing
compared is not a pass either: a comparison in which no memory metric was
judged (the exact metrics empty on a side, the baseline's trials all
failed, RSS with too few repeats) exits 2 too, with a "NOT COMPARED" line.
Other differences are warnings: the Python patch version and probes; a
different platform, machine, numpy version, allocator setting or way of
starting trials (forked or cold) makes RSS a property of the machine, so
RSS is then shown but not judged.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UsageError
from harness.interpreters import INTERPRETER_PARAM
from harness.results import read_meta, read_table
from harness.tolerance import DEFAULT_ALPHA, DEFAULT_TOLERANCE, TOLERANCE_HELP, check_settings  # noqa: F401

EXIT_OK, EXIT_REGRESSION, EXIT_NOT_COMPARABLE = 0, 1, 2

# The switch for GC counts and the census (GC_AND_CENSUS below). True (the
# default): they are exact whatever the trial's `gc` parameter, because the
# sample path is made observer-invariant -- the probes run with the
# collector paused, free what they allocate and neither trigger a collection
# nor add to the count, so the same workload gives the same collections with
# the GC on as well, and a collection that moves fails. False: the older
# rule, exact only with the GC off and judged as noisy metrics (the test
# over repeats) with it on, for a harness in which a probe can still move a
# collection by an iteration.
GC_COUNTS_EXACT_WITH_GC_ON = True

ALWAYS_EXACT = ("iterations_completed", "numpy_bytes_final", "numpy_bytes_peak", "bytes_per_iteration")
GC_AND_CENSUS = (
    "gc_collections", "gc_collections_gen0", "gc_collections_gen1", "gc_collections_gen2",
    "gc_collected_objects", "gc_uncollectable", "live_variables_final", "live_functions_final",
)
EXACT_WITH_GC_OFF = GC_AND_CENSUS  # the name of the older rule
RSS_PREFIXES = ("rss_", "uss_", "sampled_rss")
# The probe that measures each metric. A run records its probes in meta.json;
# a metric whose probe was off is not measured there, whatever its cell holds
# (runs of older harness versions wrote 0 for the GC counts without the gc probe).
METRIC_PROBES = {
    **dict.fromkeys(("numpy_bytes_final", "numpy_bytes_peak", "bytes_per_iteration"), "tracemalloc"),
    **dict.fromkeys(GC_AND_CENSUS[:6], "gc"),
    **dict.fromkeys(GC_AND_CENSUS[6:], "census"),
}
PREFIX_PROBES = (("rss_", "rss"), ("uss_", "uss"), ("sampled_rss", "sampled"))
# Rows that say whether a trial ran rather than what it held: a comparison in
# which only these were judged compared no memory at all.
BOOKKEEPING = ("status", "iterations_completed")
IDENTITY = ("experiment", "variant", "repeat", "trial")

EXACT, NOISY, TIME = "exact", "noisy", "time"
# Verdicts; the first two fail a comparison.
REGRESSION, CHANGED = "REGRESSION", "CHANGED"
OK, IMPROVED, SLOWER, FASTER, NOT_JUDGED, NOT_MEASURED = (
    "ok", "improved", "slower", "faster", "not judged", "not measured",
)
FAILING = (REGRESSION, CHANGED)
UNJUDGED = (NOT_JUDGED, NOT_MEASURED)


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
    """One metric of one trial. For noisy and time rows, `baseline` and
    `current` are the medians of the repeats, `ratio` is current / baseline,
    `p` the one-sided Mann-Whitney U p-value in the direction the median
    moved, and `repeats` the number of measured repeats (baseline, current)."""

    trial: str
    metric: str
    kind: str
    baseline: Any
    current: Any
    verdict: str
    note: str = ""
    ratio: float | None = None
    p: float | None = None
    repeats: tuple[int, int] | None = None

    @property
    def failed(self) -> bool:
        return self.verdict in FAILING

    @property
    def judged(self) -> bool:
        """A verdict on a measurement: time is shown, never judged."""
        return self.kind != TIME and self.verdict not in UNJUDGED

    @property
    def judges_memory(self) -> bool:
        return self.judged and self.metric not in BOOKKEEPING


@dataclass
class Comparison:
    baseline: ComparedRun
    current: ComparedRun
    tolerance: float
    alpha: float = DEFAULT_ALPHA
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Trials of one run that no trial of the other was compared with, each
    # with the reason ("baseline trial weakref is not in the current run").
    uncompared: list[str] = field(default_factory=list)
    # Every trial of each run must be compared (`baselines check`: the
    # baseline must describe exactly what the CI-size run runs).
    require_every_trial: bool = False

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.failed]

    @property
    def judged(self) -> list[Row]:
        return [row for row in self.rows if row.judged]

    @property
    def nothing_compared(self) -> str:
        """Why nothing was compared, or "" when some memory metric was judged."""
        if self.require_every_trial and self.uncompared:
            return ("not every trial was compared: " + "; ".join(self.uncompared)
                    + "; the baseline no longer describes the experiment's CI size, refresh it on purpose "
                      "(python -m harness.baselines refresh)")
        if any(row.judges_memory for row in self.rows):
            return ""
        if not self.rows:
            return "no trial was compared: " + ("; ".join(self.uncompared) or "no metric on either side")
        memory = [row for row in self.rows if row.metric not in BOOKKEEPING and row.kind != TIME]
        exact = [row for row in memory if row.kind == EXACT]
        reasons = []
        if not exact:
            reasons.append("no exact metric was measured in both runs")
        else:
            sides = [side for side in ("baseline", "current run") if any(f"the {side}" in r.note for r in exact)]
            where = f"in the {sides[0]}" if len(sides) == 1 else "on a side"
            off = list(dict.fromkeys(re.findall(r"its (\S+) probe was off", " ".join(r.note for r in exact))))
            probes = f" (its {', '.join(off)} probe{'s were' if len(off) > 1 else ' was'} off)" if off else ""
            reasons.append(f"the exact metrics were not measured {where}{probes}")
        noisy = [row for row in memory if row.kind == NOISY]
        if noisy:
            reasons.append(f"{', '.join(dict.fromkeys(r.metric for r in noisy))} {noisy[0].verdict}: "
                           f"{noisy[0].note}")
        return "no memory metric was judged: " + "; ".join(reasons)

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return EXIT_REGRESSION
        return EXIT_NOT_COMPARABLE if self.nothing_compared else EXIT_OK


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
    if metric in GC_AND_CENSUS:
        return EXACT if gc_off or GC_COUNTS_EXACT_WITH_GC_ON else NOISY
    if metric.startswith(RSS_PREFIXES):
        return NOISY
    if metric.endswith("_iqr"):
        return None  # the spread of a timing's rounds, not a measurement to compare
    if metric.endswith("_seconds") or metric.startswith("overhead_"):
        return TIME
    return None  # identity, parameters, status, the analytic model and its bounds: not measurements


def _trial_thresholds(meta: dict[str, Any]) -> list[Any]:
    # What the trials ran with, as recorded by each trial; the parent's otherwise.
    recorded = meta.get("trial_gc_thresholds") or [meta.get("gc_thresholds")]
    return [list(t) if t is not None else None for t in recorded]


def _minor(version: Any) -> str:
    return ".".join(str(version).split(".")[:2])


def trial_minors(run: ComparedRun) -> pd.Series:
    """Each trial's Python minor version ("3.13"): what it recorded, else the run's."""
    summary = run.summary
    recorded = summary["python"] if "python" in summary else pd.Series([None] * len(summary), index=summary.index)
    return recorded.where(recorded.notna(), run.meta.get("python")).map(_minor)


def _thresholds_by_minor(run: ComparedRun) -> dict[str, list[Any]]:
    """Python minor -> the GC thresholds its trials ran with (each trial's own where recorded)."""
    columns = [f"gc_threshold_gen{g}" for g in range(3)]
    minors = trial_minors(run)
    if not all(c in run.summary for c in columns) or run.summary[columns].isna().all().all():
        return {minor: _trial_thresholds(run.meta) for minor in set(minors)}
    found: dict[str, list[Any]] = {}
    for minor, (_, row) in zip(minors, run.summary[columns].iterrows()):
        values = [None if pd.isna(v) else int(v) for v in row]
        if values not in found.setdefault(minor, []):
            found[minor].append(values)
    return found


def comparability(baseline: ComparedRun, current: ComparedRun) -> tuple[list[str], list[str], bool]:
    """(reasons the runs are not comparable, warnings, whether RSS can be judged)."""
    b, c = baseline.meta, current.meta
    problems: list[str] = []
    if b["experiment"] != c["experiment"]:
        problems.append(f"experiment {b['experiment']} (baseline) vs {c['experiment']} (current)")
    if b.get("python_implementation") != c.get("python_implementation"):
        problems.append(f"Python implementation {b.get('python_implementation')} (baseline) "
                        f"vs {c.get('python_implementation')} (current)")
    # Trials are matched by Python minor version (a run made with --python has several).
    minors_b, minors_c = _thresholds_by_minor(baseline), _thresholds_by_minor(current)
    shared = sorted(set(minors_b) & set(minors_c))
    if not shared:
        versions = {side: sorted({str(v) for v in run.summary.get("python", pd.Series(dtype=object)).dropna()})
                    or [str(run.meta.get("python"))] for side, run in (("b", baseline), ("c", current))}
        problems.append(f"Python {', '.join(versions['b'])} (baseline) vs {', '.join(versions['c'])} (current): "
                        "trials are matched by Python minor version and the runs share none")
    for minor in shared:
        if minors_b[minor] != minors_c[minor]:
            problems.append(f"GC thresholds on Python {minor}: {minors_b[minor]} (baseline) vs {minors_c[minor]} "
                            "(current)")

    warnings: list[str] = []
    only = sorted(set(minors_b) ^ set(minors_c))
    if shared and only:
        warnings.append(f"trials on Python {', '.join(only)} ran in one run only: trials are matched by Python "
                        "minor version, so those are not compared")
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
        # A forked trial's RSS lacks the library pages its fork server mapped (harness.fork_server).
        "trial starts": lambda m: m.get("trial_starts", ["cold"]),
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
    """Trials by variant, parameters and Python minor version (the interpreter
    parameter of a --python run is that minor version: it is not a key twice)."""
    keys = ["variant", *[p for p in run.param_names if p in run.summary and p != INTERPRETER_PARAM], PYTHON_KEY]
    if run.summary.empty or "variant" not in run.summary:
        return {}
    groups = {}
    for values, group in run.summary.assign(**{PYTHON_KEY: trial_minors(run)}).groupby(keys, dropna=False,
                                                                                        sort=False):
        values = values if isinstance(values, tuple) else (values,)
        groups[tuple(zip(keys, map(_native, values)))] = group
    return groups


PYTHON_KEY = "python_minor"


def _label(key: tuple, varying: set[str]) -> str:
    variant = dict(key)["variant"]
    shown = [f"{'python' if name == PYTHON_KEY else name}={value}" for name, value in key if name in varying]
    return " ".join([variant, *shown])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def metric_probe(metric: str) -> str | None:
    """The probe that measures a metric; None for what every trial records (iterations, time)."""
    if metric in METRIC_PROBES:
        return METRIC_PROBES[metric]
    return next((probe for prefix, probe in PREFIX_PROBES if metric.startswith(prefix)), None)


def _probe_off(run: ComparedRun, metric: str) -> str:
    """The metric's probe when the run recorded its probes and that one was not among them."""
    probes, probe = run.meta.get("probes"), metric_probe(metric)
    return probe if isinstance(probes, list) and probe is not None and probe not in probes else ""


def _values(group: pd.DataFrame, metric: str, probe_off: str = "") -> pd.Series:
    """The metric's value in each repeat of a trial, NaN where it was not measured."""
    if metric not in group or probe_off:
        return pd.Series([math.nan] * len(group), dtype=float)
    return pd.to_numeric(group[metric], errors="coerce").astype(float)


def _side_missing(base: pd.Series, cur: pd.Series, off: tuple[str, str] = ("", "")) -> str:
    """Why a metric is "not measured": which side has no value (in some repeat, for exact ones)."""
    def gap(values: pd.Series, side: str, probe_off: str) -> str:
        measured = int(values.notna().sum())
        if measured == 0:
            return f"not measured in the {side}" + (f" (its {probe_off} probe was off)" if probe_off else "")
        return f"measured in {measured} of the {side}'s {len(values)} repeats"
    sides = ((base, "baseline", off[0]), (cur, "current run", off[1]))
    return "; ".join(gap(*side) for side in sides if side[0].isna().any())


# --- exact metrics --------------------------------------------------------------

def _exact_row(label: str, metric: str, base: pd.Series, cur: pd.Series, off: tuple[str, str] = ("", "")) -> Row:
    """Exact metrics must be measured in every repeat and agree between repeats and runs."""
    if base.isna().any() or cur.isna().any():
        b = _native(base.dropna().iloc[0]) if base.notna().any() else None
        c = _native(cur.dropna().iloc[0]) if cur.notna().any() else None
        return Row(label, metric, EXACT, b, c, NOT_MEASURED, _side_missing(base, cur, off))
    b, c = _agreed(base), _agreed(cur)
    if isinstance(c, tuple):
        return Row(label, metric, EXACT, b, c, REGRESSION, "differs between the current run's repeats")
    if isinstance(b, tuple):
        return Row(label, metric, EXACT, b, c, CHANGED, "differs between the baseline's repeats")
    if c == b:
        return Row(label, metric, EXACT, b, c, OK)
    return Row(label, metric, EXACT, b, c, REGRESSION if c > b else CHANGED)


def _agreed(values: pd.Series) -> Any:
    distinct = sorted(set(values))
    return _native(distinct[0]) if len(distinct) == 1 else ("varies", _native(distinct[0]), _native(distinct[-1]))


# --- noisy and time metrics: Mann-Whitney U over the repeats plus a minimum factor ---

def best_p(n_baseline: int, n_current: int) -> float:
    """The smallest one-sided p-value the exact Mann-Whitney U test can give
    for these sample sizes: every current repeat above every baseline one,
    one ordering of C(n1 + n2, n1)."""
    return 1 / math.comb(n_baseline + n_current, n_baseline)


def repeats_needed(n_other: int | None = None, alpha: float = DEFAULT_ALPHA) -> int:
    """The fewest repeats on one side that let the test reach p < alpha against
    `n_other` repeats on the other; with None, the fewest on both sides alike
    (4 at alpha 0.05: p = 1/70)."""
    if n_other is not None and n_other < 1:
        raise ValueError("the other side needs at least one repeat")
    n = 1
    while best_p(n if n_other is None else n_other, n) >= alpha:
        n += 1
    return n


def _too_few_repeats(nb: int, nc: int, alpha: float) -> str:
    against_baseline, both = repeats_needed(nb, alpha), repeats_needed(None, alpha)
    advice = f"run with --repeats {against_baseline}"
    if against_baseline > both:
        advice += f", or make both runs with --repeats {both}"
    return f"{nb} vs {nc} repeats: the test cannot reach p<{alpha:g} (at best p={best_p(nb, nc):.2g}); {advice}"


def _ratio(b: float, c: float) -> float:
    if b:
        return c / b
    return 1.0 if c == 0 else math.copysign(math.inf, c)


def _p(current: pd.Series, baseline: pd.Series, alternative: str) -> float:
    from scipy.stats import mannwhitneyu  # half a second to import: only when repeats are compared

    p = float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p  # every value equal: no evidence either way


def _noisy_row(label: str, metric: str, kind: str, base: pd.Series, cur: pd.Series, tolerance: float,
               alpha: float, rss_judged: bool, off: tuple[str, str] = ("", "")) -> Row:
    b, c = base.dropna(), cur.dropna()
    if b.empty or c.empty:
        return Row(label, metric, kind, None if b.empty else _native(b.median()),
                   None if c.empty else _native(c.median()), NOT_MEASURED, _side_missing(base, cur, off))
    mb, mc = _native(b.median()), _native(c.median())
    ratio, repeats = _ratio(mb, mc), (len(b), len(c))
    row = dict(trial=label, metric=metric, kind=kind, baseline=mb, current=mc, ratio=ratio, repeats=repeats)
    if metric.startswith(RSS_PREFIXES) and not rss_judged:
        return Row(**row, verdict=NOT_JUDGED,
                   note="RSS depends on the machine, which differs between the runs (see the warning)")
    if best_p(*repeats) >= alpha:
        return Row(**row, verdict=NOT_JUDGED, note=_too_few_repeats(*repeats, alpha))
    factor = 1 + tolerance
    greater, less = _p(c, b, "greater"), _p(c, b, "less")
    if greater < alpha and ratio > factor:
        return Row(**row, p=greater, verdict=SLOWER if kind == TIME else REGRESSION)
    if less < alpha and ratio < 1 / factor:
        return Row(**row, p=less, verdict=FASTER if kind == TIME else IMPROVED)
    p = greater if ratio >= 1 else less
    if p < alpha:
        note = f"significant, but the ratio is within the factor {factor:.2f}"
    elif ratio > factor or ratio < 1 / factor:
        note = f"beyond the factor {factor:.2f}, but not significant"
    else:
        note = ""
    return Row(**row, p=p, verdict=OK, note=note)


# --- the comparison ---------------------------------------------------------------

def compare(baseline: Path | str, current: Path | str, tolerance: float | None = None,
            alpha: float | None = None, require_every_trial: bool = False) -> Comparison:
    """Compare two runs (or a run and a baseline); raises NotComparable when they cannot be.

    `tolerance` is the minimum factor minus one for noisy metrics (0.1: a
    ratio of medians above 1.10), `alpha` the significance level of the
    one-sided Mann-Whitney U test. With `require_every_trial`, a trial of
    either run that was not compared makes the comparison exit 2."""
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    check_settings(tolerance, alpha)
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

    result = Comparison(base, cur, tolerance, alpha, warnings=warnings, require_every_trial=require_every_trial)
    # Trials are labelled by variant and the parameters either run swept.
    varying = {name for run in (base, cur) for name, value in run.meta["params"].items() if isinstance(value, list)}
    if len({dict(key)[PYTHON_KEY] for key in [*base_groups, *cur_groups]}) > 1:
        varying.add(PYTHON_KEY)
    for key in base_groups:
        if key not in cur_groups:
            result.uncompared.append(f"baseline trial {_label(key, varying)} is not in the current run")
    for key in cur_groups:
        if key not in base_groups:
            result.uncompared.append(f"current trial {_label(key, varying)} is not in the baseline")
    for key in matched:
        label = _label(key, varying)
        base_failed = _failed_statuses(base_groups[key])
        if base_failed:
            result.uncompared.append(f"baseline trial {label} did not finish ({base_failed})")
            continue
        result.rows.extend(_compare_trial(key, base_groups[key], cur_groups[key], label, tolerance, alpha,
                                          rss_judged, (base, cur)))
    result.warnings.extend(f"{reason}: not compared" for reason in result.uncompared)
    return result


def _compare_trial(key: tuple, base: pd.DataFrame, cur: pd.DataFrame, label: str, tolerance: float,
                   alpha: float, rss_judged: bool, runs: tuple[ComparedRun, ComparedRun]) -> list[Row]:
    rows = []
    cur_failed = _failed_statuses(cur)
    if cur_failed:
        rows.append(Row(label, "status", EXACT, "ok", cur_failed, REGRESSION))
    gc_off = dict(key).get("gc") == "off"
    for metric in dict.fromkeys([*base.columns, *cur.columns]):
        kind = metric_kind(metric, gc_off)
        if kind is None:
            continue
        off = (_probe_off(runs[0], metric), _probe_off(runs[1], metric))
        b, c = _values(base, metric, off[0]), _values(cur, metric, off[1])
        if b.isna().all() and c.isna().all():
            continue  # measured by neither run: nothing to show
        if kind == EXACT:
            rows.append(_exact_row(label, metric, b, c, off))
        else:
            rows.append(_noisy_row(label, metric, kind, b, c, tolerance, alpha, rss_judged, off))
    return rows


def _failed_statuses(group: pd.DataFrame) -> str:
    statuses = [str(s) for s in group.get("status", pd.Series(dtype=str)).fillna("ok") if str(s) != "ok"]
    if not statuses:
        return ""
    errors = [str(e) for e in group.get("error", pd.Series(dtype=str)).dropna() if str(e)]
    return ", ".join(statuses) + (f": {errors[0]}" if errors else "")


# --- the report -------------------------------------------------------------------

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
    if row.kind == TIME or not all(isinstance(v, (int, float)) and not _missing(v) for v in (b, c)):
        return ""  # time: the ratio says it
    difference = c - b
    absolute = f"{difference:+,}" if isinstance(difference, int) else f"{difference:+,.4g}"
    if row.kind == NOISY:
        return absolute  # the ratio beside it is the relative change
    relative = f"{(c - b) / b:+.1%}" if b else ("from 0" if c else "+0.0%")
    return f"{absolute} ({relative})"


def _fmt_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.3f}"


def _fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.2g}"


def format_table(comparison: Comparison) -> str:
    columns = ["trial", "metric", "kind", "baseline", "current", "change", "ratio", "p", "repeats", "verdict",
               "note"]
    table = pd.DataFrame(
        [{"trial": r.trial, "metric": r.metric, "kind": r.kind, "baseline": _fmt(r.baseline),
          "current": _fmt(r.current), "change": _change(r), "ratio": _fmt_ratio(r.ratio), "p": _fmt_p(r.p),
          "repeats": f"{r.repeats[0]} vs {r.repeats[1]}" if r.repeats else "", "verdict": r.verdict,
          "note": r.note} for r in comparison.rows],
        columns=columns,
    )
    if not (table["note"] != "").any():
        table = table.drop(columns="note")
    for name in ("trial", "metric", "verdict", "note"):  # words read best left-aligned, numbers right
        if name in table:
            width = max([len(name), *table[name].str.len()])
            table[name] = table[name].str.ljust(width)
            table = table.rename(columns={name: name.ljust(width)})
    with pd.option_context("display.width", 400, "display.max_colwidth", 200):
        return "\n".join(line.rstrip() for line in table.to_string(index=False).splitlines())


def report(comparison: Comparison) -> str:
    b, c = comparison.baseline, comparison.current
    factor = 1 + comparison.tolerance
    lines = [
        f"compare {b.meta['experiment']}: exact metrics must be equal; a noisy one (RSS) regresses when the current "
        f"repeats are larger",
        f"  by a one-sided Mann-Whitney U test (p < {comparison.alpha:g}) and the ratio of medians exceeds "
        f"{factor:.2f} (--tolerance {comparison.tolerance:g}); time is shown, never failing",
        f"  baseline {b.path}  (python {b.meta.get('python')}, commit {str(b.meta.get('git_commit'))[:10]})",
        f"  current  {c.path}  (python {c.meta.get('python')}, commit {str(c.meta.get('git_commit'))[:10]})",
    ]
    lines += [f"warning: {w}" for w in comparison.warnings]
    if comparison.rows:
        lines.append(format_table(comparison))
    lines.append(verdict_line(comparison))
    if any(r.verdict == CHANGED for r in comparison.regressions):
        lines.append("(CHANGED: an exact metric fell; if that is intended, refresh the baseline: "
                     "python -m harness.baselines refresh)")
    return "\n".join(lines)


def verdict_line(comparison: Comparison) -> str:
    failed, judged = comparison.regressions, comparison.judged
    trials = len({r.trial for r in comparison.rows})
    unjudged = len(comparison.rows) - len(judged)
    if failed:
        names = ", ".join(dict.fromkeys(f"{r.trial} {r.metric}" for r in failed))
        return f"REGRESSION: {len(failed)} of {len(judged)} judged metrics on {trials} trials failed: {names}"
    nothing = comparison.nothing_compared
    if nothing:
        return f"NOT COMPARED: {nothing}"
    return (f"PASS: {len(judged)} metrics judged on {trials} trials, no regression"
            + (f" ({unjudged} more shown, not judged)" if unjudged else ""))


def compare_runs(baseline: Path, current: Path, tolerance: float | None, alpha: float | None = None) -> int:
    """`python -m harness compare A B`: print the comparison; 0 pass, 1 regression,
    2 not comparable (one line on stderr, raised as a UsageError) or nothing
    compared (the report, ending in a NOT COMPARED line)."""
    comparison = compare(baseline, current, tolerance, alpha)
    print(report(comparison))
    return comparison.exit_code
