"""`harness compare`: the CI regression check against the committed baselines,
a deliberately leaking engine caught by it, and the rules for what is exact,
what is noisy and what is not comparable."""
from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.baselines import BASELINES_DIR, CI_SIZES, run_ci_size, same_python_minor
from harness.cli import main
from harness.compare import (
    CHANGED,
    IMPROVED,
    NOT_JUDGED,
    NOT_MEASURED,
    OK,
    REGRESSION,
    SLOWER,
    NotComparable,
    compare,
)

BASELINE = BASELINES_DIR / "exp17"


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
    assert out.splitlines()[-1].startswith("REGRESSION: 5 of 45 metrics on 3 trials failed: weakref numpy_bytes_final")


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


def test_an_exact_metric_that_falls_is_changed_not_improved(tmp_path):
    current = copy_run(BASELINE, tmp_path / "cur", summary=set_cell("strongref", "numpy_bytes_final", 6_399_992))
    comparison = compare(BASELINE, current)
    assert rows_by(comparison, "strongref")["numpy_bytes_final"].verdict == CHANGED
    assert comparison.exit_code == 1


def test_rss_is_judged_with_the_tolerance(tmp_path):
    rss = int(pd.read_csv(BASELINE / "summary.csv").set_index("variant").loc["weakref", "rss_peak_bytes"])
    within = copy_run(BASELINE, tmp_path / "within", summary=set_cell("weakref", "rss_peak_bytes", int(rss * 1.09)))
    beyond = copy_run(BASELINE, tmp_path / "beyond", summary=set_cell("weakref", "rss_peak_bytes", int(rss * 1.11)))
    lower = copy_run(BASELINE, tmp_path / "lower", summary=set_cell("weakref", "rss_peak_bytes", int(rss * 0.5)))
    assert compare(BASELINE, within).exit_code == 0
    assert rows_by(compare(BASELINE, beyond), "weakref")["rss_peak_bytes"].verdict == REGRESSION
    assert rows_by(compare(BASELINE, beyond, tolerance=0.2), "weakref")["rss_peak_bytes"].verdict == OK
    assert rows_by(compare(BASELINE, lower), "weakref")["rss_peak_bytes"].verdict == IMPROVED


def test_time_is_shown_but_never_fails(tmp_path):
    current = copy_run(BASELINE, tmp_path / "cur", summary=set_cell("weakref", "workload_seconds", 10.0))
    comparison = compare(BASELINE, current)
    assert rows_by(comparison, "weakref")["workload_seconds"].verdict == SLOWER
    assert comparison.exit_code == 0


def test_a_failed_trial_is_a_regression(tmp_path):
    def fail(table):
        set_cell("no_grad", "status", "timeout")(table)
        set_cell("no_grad", "error", "exceeded --timeout 5 s")(table)
        set_cell("no_grad", "numpy_bytes_final", None)(table)
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", summary=fail))
    no_grad = rows_by(comparison, "no_grad")
    assert no_grad["status"].verdict == REGRESSION and no_grad["status"].current == "timeout: exceeded --timeout 5 s"
    assert no_grad["numpy_bytes_final"].verdict == NOT_MEASURED


def test_gc_counts_are_noisy_when_the_gc_is_on(tmp_path):
    def gc_on(table):
        table["gc"] = "on"
        table["gc_collections"] = 3
    base = copy_run(BASELINE, tmp_path / "base", summary=gc_on, meta=lambda m: m["params"].update(gc="on"))
    current = copy_run(base, tmp_path / "cur", summary=set_cell("weakref", "gc_collections", 4))
    assert rows_by(compare(base, current, tolerance=0.5), "weakref")["gc_collections"].verdict == OK
    assert rows_by(compare(base, current, tolerance=0.1), "weakref")["gc_collections"].verdict == REGRESSION


def test_an_exact_metric_that_varies_between_repeats_fails(tmp_path):
    def two_repeats(table):
        extra = table[table["variant"] == "weakref"].copy()
        extra["repeat"], extra["numpy_bytes_final"] = 1, 640_000
        table.loc[len(table)] = extra.iloc[0]
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", summary=two_repeats))
    row = rows_by(comparison, "weakref")["numpy_bytes_final"]
    assert row.current == ("varies", 320_000, 640_000) and row.verdict == REGRESSION


@pytest.mark.parametrize("edit, reason", [
    (lambda m: m.update(python="3.12.1"), "Python 3.11.7 (baseline) vs 3.12.1 (current)"),
    (lambda m: m.update(trial_gc_thresholds=[[100, 10, 10]]), "GC thresholds"),
    (lambda m: m.update(experiment="exp18"), "experiment exp17 (baseline) vs exp18 (current)"),
])
def test_runs_that_are_not_comparable_exit_2_with_one_line(tmp_path, capsys, edit, reason):
    current = copy_run(BASELINE, tmp_path / "cur", meta=edit)
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
        meta.update(python="3.11.9", platform="Linux-other")
    comparison = compare(BASELINE, copy_run(BASELINE, tmp_path / "cur", meta=elsewhere,
                                            summary=drop_no_grad))
    assert comparison.exit_code == 0
    warnings = "\n".join(comparison.warnings)
    assert "Python 3.11.7 (baseline) vs 3.11.9 (current)" in warnings
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


def test_a_bad_tolerance_is_refused(capsys):
    assert main(["compare", str(BASELINE), str(BASELINE), "--tolerance", "-0.5"]) == 2
    assert "--tolerance must be a fraction of at least 0" in capsys.readouterr().err


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
