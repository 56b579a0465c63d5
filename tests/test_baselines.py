"""The committed baselines and `python -m harness.baselines`: what is covered,
what a baseline holds, refreshing on purpose, and refusing an unhealthy run."""
from __future__ import annotations

import json
import textwrap

import pytest

from harness.baselines import BASELINES_DIR, CI_PROBES, CI_SIZES, covered, main, refresh, same_python_minor
from harness.check import check_summary
from harness.compare import compare
from harness.errors import UsageError
from harness.registry import all_experiments
from harness.results import read_meta, read_table


# The committed baselines are comparable only on the Python minor version
# they were made on (CI's); elsewhere these comparisons cannot be made.
on_baseline_python = pytest.mark.skipif(
    not same_python_minor(), reason="the committed baselines were made on another Python minor "
    "version, and compare refuses to compare across them (refresh them to test here)",
)


def test_every_ci_size_names_a_registered_experiment():
    assert set(CI_SIZES) <= set(all_experiments())
    with_size, without = covered()
    assert "exp17" in with_size and not set(with_size) & set(without)


@pytest.mark.parametrize("experiment", sorted(CI_SIZES))
def test_a_committed_baseline_is_its_ci_size_and_meets_its_model(experiment):
    meta = read_meta(BASELINES_DIR / experiment)
    summary = read_table(BASELINES_DIR / experiment, "summary")
    assert meta["experiment"] == experiment and meta["status"] == "ok"
    assert {k: meta["params"][k] for k in CI_SIZES[experiment].params} == CI_SIZES[experiment].params
    assert tuple(meta["probes"]) == CI_SIZES[experiment].probes == CI_PROBES
    assert meta["baseline"]["refreshed_by"] == "python -m harness.baselines refresh"
    checks = check_summary(all_experiments()[experiment], summary)
    assert checks and all(check.passed for check in checks), [c.line() for c in checks if not c.passed]


def test_the_exp17_baseline_holds_the_seeds_figures():
    summary = read_table(BASELINES_DIR / "exp17", "summary").set_index("variant")
    # 20 graphs of 4 arrays of 80,000 bytes, GC off.
    assert summary.loc["strongref", "numpy_bytes_final"] == 20 * 320_000
    assert summary.loc["weakref", "numpy_bytes_final"] == 320_000
    assert summary.loc["weakref", "numpy_bytes_peak"] == 640_000
    assert summary.loc["no_grad", "numpy_bytes_final"] == 160_000


@on_baseline_python
def test_refresh_writes_a_baseline_that_check_accepts(tmp_path, capsys):
    target = refresh("exp17", tmp_path)
    assert sorted(p.name for p in target.iterdir()) == ["meta.json", "summary.csv"]
    assert json.loads((target / "meta.json").read_text())["baseline"]["ci_size"] == {"gc": "off", "iterations": 20}
    # The exact figures repeat to the byte: a new refresh equals the committed one.
    exact = [row for row in compare(BASELINES_DIR, target).rows if row.kind == "exact"]
    assert exact and all(row.verdict == "ok" for row in exact)

    assert main(["check", "exp17", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: 45 metrics on 3 trials")


LEAKING_WEAKREF = textwrap.dedent("""
    from engine.interface import DezeroStyleEngine
    from engine.variants import Variant, register

    def load():
        import engine
        return DezeroStyleEngine(engine, "weakref", {"weak_outputs": False})

    register(Variant("weakref", "step 17, switched to strong outputs", "deliberately leaking", load))
""")


def test_refresh_refuses_a_run_whose_expectations_fail(tmp_path, monkeypatch):
    # Trials are fresh interpreters: a sitecustomize on their path swaps the engine in each.
    (tmp_path / "leak").mkdir()
    (tmp_path / "leak" / "sitecustomize.py").write_text(LEAKING_WEAKREF)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "leak"))
    with pytest.raises(UsageError, match=r"not a healthy baseline, not written: .*weakref.*6,400,000"):
        refresh("exp17", tmp_path / "baselines")
    assert not (tmp_path / "baselines" / "exp17").exists()


def test_list_and_bad_names(capsys):
    assert main(["list"]) == 0
    assert "exp17  {'gc': 'off', 'iterations': 20}" in capsys.readouterr().out
    assert main(["refresh", "exp99"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "unknown experiment 'exp99'" in err
