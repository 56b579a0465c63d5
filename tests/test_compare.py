"""`harness compare`: the CI regression check against the committed baselines,
a deliberately leaking engine caught by it, and the rules for what is exact,
what is noisy (a Mann-Whitney U test over repeats plus a minimum factor),
what is not comparable, and that nothing compared is not a pass."""
from __future__ import annotations

import json
import math
import re
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.baselines import BASELINES_DIR, CI_SIZES, run_ci_size, same_python_minor
import harness.compare
from harness.cli import main
from harness.compare import (
    CHANGED,
    EXIT_NOT_COMPARABLE,
    FASTER,
    IMPROVED,
    NOT_JUDGED,
    NOT_MEASURED,
    OK,
    REGRESSION,
    SLOWER,
    NotComparable,
    best_p,
    compare,
)

BASELINE = BASELINES_DIR / "exp17"
# What the baseline of this interpreter's minor version was made on (3.11.7, 3.13.0, ...).
MADE_ON = json.loads((BASELINE / "meta.json").read_text())["python"]
MINOR = ".".join(MADE_ON.split(".")[:2])
THRESHOLDS = json.loads((BASELINE / "meta.json").read_text())["trial_gc_thresholds"]
ANOTHER_MINOR = "3.12.1" if MINOR != "3.12" else "3.11.7"


# The committed baselines are comparable only on the Python minor version
# they were made on (CI's); elsewhere these comparisons cannot be made.
on_baseline_python = pytest.mark.skipif(
    not same_python_minor(), reason="the committed baselines were made on another Python minor "
    "version, and compare refuses to compare across them (refresh them to test here)",
)

# Trials run in fresh interpreters (python -m harness.trial), so a variant
# registered only in this test process would not reach them. Python imports
# `sitecustomize` from the path at start-up, in every process: put one on the
# trials' PYTHONPATH and every trial sees "weakref" as the step-16 engine.
LEAKING_WEAKREF = textwrap.dedent("""
    from engine.interface import DezeroStyleEngine
    from engine.variants import Variant, register

    def load():
        import engine
        return DezeroStyleEngine(engine, "weakref", {"weak_outputs": False, "free_intermediate_grads": False})

    register(Variant("weakref", "step 17, switched to strong outputs", "deliberately leaking", load))
""")


def run_with_leaking_weakref(out: Path) -> Path:
    plugin = out / "leak"
    plugin.mkdir(parents=True)
    (plugin / "sitecustomize.py").write_text(LEAKING_WEAKREF)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(plugin))
        return run_ci_size("exp17", out).path


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory) -> Path:
    return run_ci_size("exp17", tmp_path_factory.mktemp("fresh")).path


@pytest.fixture(scope="module")
def leaking_run(tmp_path_factory) -> Path:
    return run_with_leaking_weakref(tmp_path_factory.mktemp("leaking"))


def rows_by(comparison, trial: str) -> dict[str, object]:
    return {row.metric: row for row in comparison.rows if row.trial == trial}


@on_baseline_python
def test_a_fresh_ci_run_matches_the_committed_baseline(fresh_run, capsys):
    assert main(["compare", str(BASELINES_DIR), str(fresh_run)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("PASS: ") and "no regression" in out
    comparison = compare(BASELINE, fresh_run)
    assert {row.trial for row in comparison.rows} == {"strongref", "weakref", "no_grad"}
    weakref = rows_by(comparison, "weakref")
    assert (weakref["numpy_bytes_final"].baseline, weakref["numpy_bytes_final"].current) == (320_000, 320_000)
    assert all(row.verdict == OK for row in comparison.rows if row.kind == "exact")


@on_baseline_python
def test_a_leaking_weakref_fails_with_a_clear_table(leaking_run, capsys):
    assert main(["compare", str(BASELINE), str(leaking_run)]) == 1
    out = capsys.readouterr().out
    table = {tuple(line.split()[:2]): line for line in out.splitlines()}
    assert re.search(r"^weakref\s+numpy_bytes_final\s+exact\s+320,000\s+6,400,000\s+\+6,080,000 \(\+1900\.0%\)"
                     r"\s+REGRESSION", table["weakref", "numpy_bytes_final"])
    assert re.search(r"^weakref\s+numpy_bytes_peak\s+exact\s+640,000\s+6,400,000\s.*REGRESSION",
                     table["weakref", "numpy_bytes_peak"])
    assert re.search(r"live_functions_final\s+exact\s+3\s+60\s.*REGRESSION", table["weakref", "live_functions_final"])
    assert table["strongref", "numpy_bytes_final"].split()[-1] == OK
    assert out.splitlines()[-1].startswith("REGRESSION: 5 of 36 judged metrics on 3 trials failed: "
                                           "weakref numpy_bytes_final")


# --- the rules, on edited copies of the baseline ---------------------------------

def copy_run(source: Path, target: Path, summary=None, meta=None) -> Path:
    shutil.copytree(source, target)
    if summary is not None:
        table = pd.read_csv(target / "summary.csv")
        edited = summary(table)  # edits in place, or returns a new table
        table = table if edited is None else edited
        table.to_csv(target / "summary.csv", index=False)
        # A run records its tables' row counts; keep the copy a consistent run.
        recorded = json.loads((target / "meta.json").read_text())
        if "summary" in recorded.get("tables", {}):
            recorded["tables"]["summary"]["rows"] = len(table)
            (target / "meta.json").write_text(json.dumps(recorded))
    if meta is not None:
        data = json.loads((target / "meta.json").read_text())
        meta(data)
        (target / "meta.json").write_text(json.dumps(data))
    return target


def set_cell(variant: str, column: str, value):
    def edit(table):
        if column not in table:
            table[column] = None
        table[column] = table[column].astype(object)
        table.loc[table["variant"] == variant, column] = value
    return edit


# Synthetic runs: a meta.json and a summary.csv, rows copied from the committed
# exp17 baseline, so the rules are tested in milliseconds without a trial.
TEMPLATE_META = json.loads((BASELINE / "meta.json").read_text())
TEMPLATE_ROWS = pd.read_csv(BASELINE / "summary.csv")
EXACT_PROBE_METRICS = ("numpy_bytes_final", "numpy_bytes_peak", "bytes_per_iteration",
                       *harness.compare.GC_AND_CENSUS)


def make_run(path: Path, repeats: int = 1, variants=("strongref", "weakref", "no_grad"), meta=None,
             **columns) -> Path:
    """`repeats` summary rows per variant, each column of `columns` set to a
    value (every row), a list (one value per repeat) or a dict of those by
    variant (the other variants keep the baseline's value); None is empty."""
    rows = []
    for variant in variants:
        known = variant if variant in set(TEMPLATE_ROWS["variant"]) else "weakref"
        template = TEMPLATE_ROWS[TEMPLATE_ROWS["variant"] == known].iloc[0].to_dict()
        for repeat in range(repeats):
            row = dict(template, variant=variant, repeat=repeat, trial=len(rows))
            for column, value in columns.items():
                if isinstance(value, dict):
                    if variant not in value:
                        continue
                    value = value[variant]
                row[column] = value[repeat] if isinstance(value, (list, tuple)) else value
            rows.append(row)
    table = pd.DataFrame(rows)
    path.mkdir(parents=True)
    table.to_csv(path / "summary.csv", index=False)
    data = json.loads(json.dumps(TEMPLATE_META))
    data.update(repeats=repeats, variants=list(variants), tables={"summary": {"rows": len(table)}})
    if meta is not None:
        meta(data)
    (path / "meta.json").write_text(json.dumps(data))
    return path


MB = 1_000_000
BASE_RSS = [100 * MB, 101 * MB, 99 * MB, 102 * MB, 98 * MB]  # median 100 MB


def scaled(factor: float, values=BASE_RSS) -> list:
    return [type(v)(v * factor) for v in values]


def test_an_exact_metric_that_falls_is_changed_not_improved(tmp_path):
    current = copy_run(BASELINE, tmp_path / "cur", summary=set_cell("strongref", "numpy_bytes_final", 6_399_992))
    comparison = compare(BASELINE, current)
    assert rows_by(comparison, "strongref")["numpy_bytes_final"].verdict == CHANGED
    assert comparison.exit_code == 1


def test_rss_regresses_only_when_significantly_larger_and_beyond_the_factor(tmp_path):
    base = make_run(tmp_path / "base", repeats=5, rss_peak_bytes={"weakref": BASE_RSS})

    def row(name, values, **settings):
        current = tmp_path / name
        if not current.exists():
            make_run(current, repeats=5, rss_peak_bytes={"weakref": values})
        return rows_by(compare(base, current, **settings), "weakref")["rss_peak_bytes"]

    beyond = row("beyond", scaled(1.2))  # every current repeat above every baseline one
    assert (beyond.verdict, beyond.repeats) == (REGRESSION, (5, 5))
    assert (beyond.baseline, beyond.current) == (100 * MB, 120 * MB)
    assert beyond.ratio == pytest.approx(1.2) and beyond.p == pytest.approx(1 / 252)
    assert row("beyond", scaled(1.2), tolerance=0.3).verdict == OK  # the factor is 1.3 now

    within = row("within", scaled(1.05))  # significant, but not beyond the factor 1.10
    assert within.verdict == OK and within.p < 0.05 and "within the factor 1.10" in within.note
    assert row("within", scaled(1.05), tolerance=0).verdict == REGRESSION

    # The median is 1.2 times the baseline's, but the repeats overlap it: not significant.
    spread = row("spread", [80 * MB, 90 * MB, 120 * MB, 150 * MB, 160 * MB])
    assert spread.ratio == pytest.approx(1.2) and spread.p > 0.05
    assert spread.verdict == OK and "not significant" in spread.note

    lower = row("lower", scaled(0.5))
    assert lower.verdict == IMPROVED and lower.p == pytest.approx(1 / 252)


@pytest.mark.parametrize("n_baseline, n_current, reason", [
    (1, 1, "1 vs 1 repeats: the test cannot reach p<0.05 (at best p=0.5); "
           "run with --repeats 20, or make both runs with --repeats 4"),
    (2, 1, "2 vs 1 repeats: the test cannot reach p<0.05 (at best p=0.33); "
           "run with --repeats 5, or make both runs with --repeats 4"),
    (3, 3, "3 vs 3 repeats: the test cannot reach p<0.05 (at best p=0.05); run with --repeats 4"),
])
def test_too_few_repeats_are_not_judged_and_say_why(tmp_path, n_baseline, n_current, reason):
    base = make_run(tmp_path / "base", repeats=n_baseline, rss_peak_bytes=BASE_RSS[:n_baseline])
    doubled = make_run(tmp_path / "cur", repeats=n_current, rss_peak_bytes=scaled(2)[:n_current])
    comparison = compare(base, doubled)
    row = rows_by(comparison, "weakref")["rss_peak_bytes"]
    # Twice the RSS, and still no verdict: no silent fallback threshold.
    assert (row.verdict, row.note, row.repeats) == (NOT_JUDGED, reason, (n_baseline, n_current))
    assert row.ratio == pytest.approx(2, rel=0.01) and row.p is None
    assert comparison.exit_code == 0  # the exact metrics were judged, and equal


def test_four_repeats_a_side_are_enough(tmp_path):
    assert best_p(3, 3) == pytest.approx(0.05) and best_p(4, 4) == pytest.approx(1 / 70)
    base = make_run(tmp_path / "base", repeats=4, rss_peak_bytes=BASE_RSS[:4])
    current = make_run(tmp_path / "cur", repeats=4, rss_peak_bytes=scaled(2)[:4])
    row = rows_by(compare(base, current), "weakref")["rss_peak_bytes"]
    assert row.verdict == REGRESSION and row.p == pytest.approx(1 / 70)


def test_the_report_shows_medians_ratio_p_and_repeats(tmp_path, capsys):
    base = make_run(tmp_path / "base", repeats=5, rss_peak_bytes=BASE_RSS)
    current = make_run(tmp_path / "cur", repeats=5,
                       rss_peak_bytes={"strongref": BASE_RSS, "weakref": scaled(1.2), "no_grad": BASE_RSS})
    assert main(["compare", str(base), str(current)]) == 1
    out = capsys.readouterr().out
    assert "one-sided Mann-Whitney U test (p < 0.05) and the ratio of medians exceeds 1.10" in out
    table = {tuple(line.split()[:2]): line for line in out.splitlines()}
    assert re.search(r"^weakref\s+rss_peak_bytes\s+noisy\s+100,000,000\s+120,000,000\s+\+20,000,000\s+1\.200"
                     r"\s+0\.004\s+5 vs 5\s+REGRESSION", table["weakref", "rss_peak_bytes"])
    assert re.search(r"^strongref\s+rss_peak_bytes\s+noisy\s+100,000,000\s+100,000,000\s+\+0\s+1\.000\s+0\.54"
                     r"\s+5 vs 5\s+ok", table["strongref", "rss_peak_bytes"])
    assert out.splitlines()[-1] == "REGRESSION: 1 of 42 judged metrics on 3 trials failed: weakref rss_peak_bytes"


def test_time_is_shown_but_never_fails(tmp_path):
    times = [0.010, 0.011, 0.009, 0.0105, 0.0095]
    base = make_run(tmp_path / "base", repeats=5, workload_seconds=times)
    slower = make_run(tmp_path / "slower", repeats=5, workload_seconds={"weakref": scaled(10, times)})
    faster = make_run(tmp_path / "faster", repeats=5, workload_seconds={"weakref": [t / 10 for t in times]})
    comparison = compare(base, slower)
    assert rows_by(comparison, "weakref")["workload_seconds"].verdict == SLOWER
    assert comparison.exit_code == 0
    assert rows_by(compare(base, faster), "weakref")["workload_seconds"].verdict == FASTER
    once = rows_by(compare(BASELINE, copy_run(BASELINE, tmp_path / "once", summary=set_cell(
        "weakref", "workload_seconds", 10.0))), "weakref")["workload_seconds"]
    assert once.verdict == NOT_JUDGED and once.note.startswith("1 vs 1 repeats")


def test_a_failed_trial_is_a_regression(tmp_path):
    def fail(table):
        set_cell("no_grad", "status", "timeout")(table)
        set_cell("no_grad", "error", "exceeded --timeout 5 s")(table)
        set_cell("no_grad", "numpy_bytes_final", None)(table)
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", summary=fail))
    no_grad = rows_by(comparison, "no_grad")
    assert no_grad["status"].verdict == REGRESSION and no_grad["status"].current == "timeout: exceeded --timeout 5 s"
    assert no_grad["numpy_bytes_final"].verdict == NOT_MEASURED


def gc_on(data):
    data["params"]["gc"] = "on"


def test_gc_counts_and_census_are_exact_with_the_gc_on_by_default(tmp_path):
    assert harness.compare.GC_COUNTS_EXACT_WITH_GC_ON is True
    base = make_run(tmp_path / "base", gc="on", gc_collections=3, meta=gc_on)
    current = make_run(tmp_path / "cur", gc="on", gc_collections={"strongref": 3, "weakref": 4, "no_grad": 2},
                       meta=gc_on)
    comparison = compare(base, current, tolerance=0.5)
    assert rows_by(comparison, "weakref")["gc_collections"].kind == "exact"
    assert rows_by(comparison, "weakref")["gc_collections"].verdict == REGRESSION
    assert rows_by(comparison, "no_grad")["gc_collections"].verdict == CHANGED


def test_the_switch_makes_gc_counts_noisy_with_the_gc_on(tmp_path, monkeypatch):
    monkeypatch.setattr(harness.compare, "GC_COUNTS_EXACT_WITH_GC_ON", False)
    base = make_run(tmp_path / "base", repeats=4, gc="on", gc_collections=[3, 3, 4, 3], meta=gc_on)
    more = make_run(tmp_path / "more", repeats=4, gc="on", gc_collections={"weakref": [6, 7, 6, 6]}, meta=gc_on)
    row = rows_by(compare(base, more), "weakref")["gc_collections"]
    assert (row.kind, row.verdict, row.repeats) == ("noisy", REGRESSION, (4, 4))
    once = make_run(tmp_path / "once", gc="on", gc_collections=3, meta=gc_on)
    assert rows_by(compare(once, once), "weakref")["gc_collections"].verdict == NOT_JUDGED
    # With the GC off they stay exact either way.
    assert rows_by(compare(BASELINE, BASELINE), "weakref")["gc_collections"].kind == "exact"


@pytest.mark.parametrize("exact_with_gc_on", [True, False])
@pytest.mark.parametrize("gc", ["off", "on"])
def test_an_empty_gc_metric_is_not_measured_never_a_pass_or_fail(tmp_path, monkeypatch, exact_with_gc_on, gc):
    monkeypatch.setattr(harness.compare, "GC_COUNTS_EXACT_WITH_GC_ON", exact_with_gc_on)
    params = lambda m: m["params"].update(gc=gc)  # noqa: E731
    measured = make_run(tmp_path / "measured", repeats=2, gc=gc, gc_collections=3, live_functions_final=5,
                        meta=params)
    empty = make_run(tmp_path / "empty", repeats=2, gc=gc, gc_collections=None, meta=params,
                     live_functions_final={"strongref": 5, "weakref": [5, None], "no_grad": 5})
    for base, current, note in [(measured, empty, "not measured in the current run"),
                                (empty, measured, "not measured in the baseline")]:
        comparison = compare(base, current)
        weakref = rows_by(comparison, "weakref")
        row = weakref["gc_collections"]
        assert (row.verdict, row.note) == (NOT_MEASURED, note)
        assert row not in comparison.judged and row not in comparison.regressions
        census = weakref["live_functions_final"]
        if census.kind == "exact":  # an exact metric must be measured in every repeat
            assert census.verdict == NOT_MEASURED and census.note.startswith("measured in 1 of the ")
            assert census.note.endswith("'s 2 repeats")
        else:  # a noisy one is judged on the repeats that measured it: too few here
            assert census.verdict == NOT_JUDGED and sorted(census.repeats) == [1, 2]
        assert comparison.exit_code == 0  # the numpy-domain bytes were judged


def test_a_gc_count_of_a_run_without_the_gc_probe_is_not_measured(tmp_path):
    # A run records its probes; without the gc probe its GC counts are 0 in the
    # table (no collection was seen), which is no measurement.
    no_gc = make_run(tmp_path / "no_gc", meta=lambda m: m.update(probes=["tracemalloc", "rss", "census"]))
    for base, current, side in [(BASELINE, no_gc, "current run"), (no_gc, BASELINE, "baseline")]:
        comparison = compare(base, current)
        for trial in ("strongref", "weakref", "no_grad"):
            row = rows_by(comparison, trial)["gc_collections"]
            assert (row.verdict, row.note) == (NOT_MEASURED, f"not measured in the {side} (its gc probe was off)")
            assert rows_by(comparison, trial)["live_variables_final"].verdict == OK  # the census was on
        assert comparison.exit_code == 0


def test_an_exact_metric_that_varies_between_repeats_fails(tmp_path):
    def two_repeats(table):
        extra = table[table["variant"] == "weakref"].copy()
        extra["repeat"], extra["numpy_bytes_final"] = 1, 640_000
        table.loc[len(table)] = extra.iloc[0]
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", summary=two_repeats))
    row = rows_by(comparison, "weakref")["numpy_bytes_final"]
    assert row.current == ("varies", 320_000, 640_000) and row.verdict == REGRESSION


def with_threshold(table):
    table["gc_threshold_gen0"] = 100  # as each trial records it


def on_python(version):
    def edit(table):
        table["python"] = version
    return edit


@pytest.mark.parametrize("edit, summary, reason", [
    (lambda m: m.update(python=ANOTHER_MINOR), on_python(ANOTHER_MINOR),
     f"Python {MADE_ON} (baseline) vs {ANOTHER_MINOR} (current): trials are matched by Python minor version "
     "and the runs share none"),
    (lambda m: m.update(trial_gc_thresholds=[[100, 10, 10]]), with_threshold,
     f"GC thresholds on Python {MINOR}: {THRESHOLDS} (baseline) vs [[100, 10, 10]]"),
    (lambda m: m.update(experiment="exp18"), None, "experiment exp17 (baseline) vs exp18 (current)"),
])
def test_runs_that_are_not_comparable_exit_2_with_one_line(tmp_path, capsys, edit, summary, reason):
    current = copy_run(BASELINE, tmp_path / "cur", meta=edit, summary=summary)
    assert main(["compare", str(BASELINE), str(current)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "are not comparable" in captured.err and reason in captured.err


@on_baseline_python
def test_different_parameters_match_no_trial(fresh_run, tmp_path):
    def other_size(table):
        table["iterations"] = 10
    current = copy_run(fresh_run, tmp_path / "cur", summary=other_size,
                       meta=lambda m: m["params"].update(iterations=10))
    with pytest.raises(NotComparable, match="no trial matches by variant and parameters: "
                                            "iterations 20 \\(baseline\\) vs 10 \\(current\\)"):
        compare(BASELINE, current)


def drop_no_grad(table):
    return table[table["variant"] != "no_grad"]


def test_lesser_differences_are_warnings(tmp_path):
    def elsewhere(meta):
        meta.update(python=f"{MINOR}.99", platform="Linux-other")
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", meta=elsewhere,
                                            summary=drop_no_grad))
    assert comparison.exit_code == 0
    warnings = "\n".join(comparison.warnings)
    assert f"Python {MADE_ON} (baseline) vs {MINOR}.99 (current)" in warnings
    assert "RSS not judged" in warnings and "platform" in warnings
    assert "baseline trial no_grad is not in the current run" in warnings
    assert rows_by(comparison, "weakref")["rss_peak_bytes"].verdict == NOT_JUDGED


@pytest.mark.parametrize("damage, named", [
    (lambda d: (d / "summary.csv").write_text('variant,"numpy_bytes_final\nweakref,1\n'), "summary.csv is corrupt"),
    (lambda d: (d / "meta.json").write_text('{"experiment": "exp1'), "meta.json is corrupt"),
    (lambda d: (d / "summary.csv").unlink(), "summary.csv is missing"),
])
def test_a_corrupt_or_truncated_file_is_named_in_one_line(tmp_path, capsys, damage, named):
    current = copy_run(BASELINE, tmp_path / "cur")
    damage(current)
    assert main(["compare", str(BASELINE), str(current)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and named in err and str(current) in err


def test_a_bad_tolerance_is_refused_naming_its_unit(capsys):
    assert main(["compare", str(BASELINE), str(BASELINE), "--tolerance", "-0.5"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "--tolerance is the minimum factor minus one, a fraction (0.1: the current median must exceed " \
           "the baseline's by more than 10%); it must be at least 0, got -0.5" in err


# --- nothing compared is not a pass ---------------------------------------------------

def test_a_comparison_with_something_judged_passes_and_counts_it(tmp_path, capsys):
    assert main(["compare", str(make_run(tmp_path / "a")), str(make_run(tmp_path / "b"))]) == 0
    # 12 exact metrics a trial judged; RSS (one repeat a side) and time shown, not judged.
    assert capsys.readouterr().out.splitlines()[-1] == (
        "PASS: 36 metrics judged on 3 trials, no regression (9 more shown, not judged)")


def test_a_current_run_without_the_exact_probes_compares_nothing(tmp_path, capsys):
    current = make_run(tmp_path / "cur", **{m: None for m in EXACT_PROBE_METRICS},
                       meta=lambda m: m.update(probes=["rss"]))
    comparison = compare(BASELINE, current)
    assert comparison.rows and not comparison.judged[3:]  # iterations_completed only
    assert comparison.exit_code == EXIT_NOT_COMPARABLE
    assert main(["compare", str(BASELINE), str(current)]) == 2
    out = capsys.readouterr().out
    assert "PASS" not in out
    assert out.splitlines()[-1] == (
        "NOT COMPARED: no memory metric was judged: the exact metrics were not measured in the current run "
        "(its tracemalloc, gc, census probes were off); rss_final_bytes, rss_peak_bytes not judged: 1 vs 1 "
        "repeats: the test cannot reach p<0.05 (at best p=0.5); run with --repeats 20, or make both runs with "
        "--repeats 4")


def test_a_baseline_whose_trials_all_failed_compares_nothing(tmp_path, capsys):
    base = make_run(tmp_path / "base", status="failed", error="RuntimeError: boom",
                    **{m: None for m in EXACT_PROBE_METRICS})
    assert main(["compare", str(base), str(BASELINE)]) == 2
    out = capsys.readouterr().out
    assert "PASS" not in out
    assert out.splitlines()[-1] == (
        "NOT COMPARED: no trial was compared: baseline trial strongref did not finish (failed: RuntimeError: boom); "
        "baseline trial weakref did not finish (failed: RuntimeError: boom); "
        "baseline trial no_grad did not finish (failed: RuntimeError: boom)")


def test_a_variant_renamed_away_is_not_compared(tmp_path, capsys):
    base = make_run(tmp_path / "base", variants=("weakref",))
    renamed = make_run(tmp_path / "renamed", variants=("weakref_v2",))
    assert main(["compare", str(base), str(renamed)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "no trial matches by variant and parameters: variants weakref vs weakref_v2" in captured.err
    # One of several renamed: compare judges the rest and warns; required to cover every trial, it does not pass.
    partly = make_run(tmp_path / "partly", variants=("strongref", "weakref_v2", "no_grad"))
    assert compare(BASELINE, partly).exit_code == 0
    strict = compare(BASELINE, partly, require_every_trial=True)
    assert strict.exit_code == EXIT_NOT_COMPARABLE
    assert strict.nothing_compared.startswith("not every trial was compared: baseline trial weakref is not in "
                                              "the current run; current trial weakref_v2 is not in the baseline")


def test_a_regression_outranks_nothing_compared(tmp_path):
    def failed(table):
        table["status"], table["error"] = "failed", "MemoryError"
        for metric in EXACT_PROBE_METRICS:
            table[metric] = None
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", summary=failed))
    assert not [row for row in comparison.rows if row.judges_memory]
    assert comparison.exit_code == 1  # every current trial failed: that is a regression, not "nothing compared"


def test_every_ci_size_has_a_committed_baseline():
    for experiment in CI_SIZES:
        assert (BASELINES_DIR / experiment / "summary.csv").is_file()
        assert (BASELINES_DIR / experiment / "meta.json").is_file()


@on_baseline_python
@pytest.mark.parametrize("experiment", sorted(set(CI_SIZES) - {"exp17"}))
def test_every_other_ci_size_matches_its_committed_baseline(experiment, tmp_path, capsys):
    """The CI regression check for the experiments beyond exp17 (exp17 is above)."""
    run = run_ci_size(experiment, tmp_path).path
    assert main(["compare", str(BASELINES_DIR), str(run)]) == 0, capsys.readouterr().out
    exact = [row for row in compare(BASELINES_DIR / experiment, run).rows if row.kind == "exact"]
    assert exact and all(row.verdict == OK for row in exact)
