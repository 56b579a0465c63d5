"""The committed baselines and `python -m harness.baselines`: what is covered,
what a baseline holds, refreshing on purpose, refusing an unhealthy run or a
path in the way, and a check that compared nothing (or not every trial) not
passing."""
from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness.baselines
from harness.baselines import BASELINES_DIR, CI_PROBES, CI_SIZES, covered, main, refresh, same_python_minor
from harness.check import check_summary
from harness.compare import compare
from harness.errors import UsageError
from harness.registry import all_experiments
from harness.results import read_meta, read_table

ROOT = Path(__file__).resolve().parent.parent


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
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: 36 metrics judged on 3 trials")


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


# --- check and refresh on synthetic runs (no trial is run) ------------------------

@pytest.fixture
def fresh_run_is(monkeypatch, tmp_path):
    """Make `run_ci_size` return a copy of a synthetic run instead of running trials."""
    def use(run_dir, ok=True):
        def fake_run_ci_size(experiment, out):
            target = out / "exp17" / "fake-run"
            shutil.copytree(run_dir, target)
            return SimpleNamespace(path=target, ok=ok, checks=[], meta=json.loads((target / "meta.json").read_text()))
        monkeypatch.setattr(harness.baselines, "run_ci_size", fake_run_ci_size)
    return use


def baseline_of(run_dir, root):
    shutil.copytree(run_dir, root / "exp17")
    return root


def test_check_passes_a_run_like_its_baseline(tmp_path, fresh_run_is, capsys):
    from test_compare import make_run

    fresh_run_is(make_run(tmp_path / "run"))
    root = baseline_of(make_run(tmp_path / "base"), tmp_path / "baselines")
    assert main(["check", "exp17", "--dir", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: 36 metrics judged on 3 trials")


def test_check_with_a_variant_renamed_away_does_not_pass(tmp_path, fresh_run_is, capsys):
    from test_compare import make_run

    fresh_run_is(make_run(tmp_path / "run", variants=("strongref", "weakref_v2", "no_grad")))
    root = baseline_of(make_run(tmp_path / "base"), tmp_path / "baselines")
    assert main(["check", "exp17", "--dir", str(root)]) == 2
    out = capsys.readouterr().out
    assert "PASS" not in out
    assert out.splitlines()[-1] == (
        "NOT COMPARED: not every trial was compared: baseline trial weakref is not in the current run; "
        "current trial weakref_v2 is not in the baseline; the baseline no longer describes the experiment's "
        "CI size, refresh it on purpose (python -m harness.baselines refresh)")


def test_check_with_no_trial_matching_is_one_line(tmp_path, fresh_run_is, capsys):
    from test_compare import make_run

    fresh_run_is(make_run(tmp_path / "run", variants=("weakref_v2",)))
    root = baseline_of(make_run(tmp_path / "base", variants=("weakref",)), tmp_path / "baselines")
    assert main(["check", "exp17", "--dir", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "no trial matches by variant and parameters: variants weakref vs weakref_v2" in captured.err


def test_check_against_a_baseline_whose_trials_all_failed_does_not_pass(tmp_path, fresh_run_is, capsys):
    from test_compare import make_run

    fresh_run_is(make_run(tmp_path / "run"))
    failed = make_run(tmp_path / "base", status="failed", error="RuntimeError: boom", numpy_bytes_final=None)
    assert main(["check", "exp17", "--dir", str(baseline_of(failed, tmp_path / "baselines"))]) == 2
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("NOT COMPARED: not every trial was compared: baseline trial strongref did not finish "
                           "(failed: RuntimeError: boom)")


def test_check_of_a_run_without_the_exact_probes_does_not_pass(tmp_path, fresh_run_is, capsys):
    from test_compare import EXACT_PROBE_METRICS, make_run

    fresh_run_is(make_run(tmp_path / "run", **{m: None for m in EXACT_PROBE_METRICS}))
    root = baseline_of(make_run(tmp_path / "base"), tmp_path / "baselines")
    assert main(["check", "exp17", "--dir", str(root)]) == 2
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "NOT COMPARED: no memory metric was judged: the exact metrics were not measured in the current run")


def test_check_refuses_a_bad_tolerance_or_a_missing_baseline_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness.baselines, "run_ci_size", lambda *a: pytest.fail("ran the experiment"))
    assert main(["check", "exp17", "--tolerance", "-1"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--tolerance is the minimum factor minus one" in err
    assert main(["check", "exp17", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "is not a run directory (no meta.json)" in err


@pytest.mark.parametrize("in_the_way, named", [
    (lambda root: root.write_text("not a directory"), "is a file, not a directory"),
    (lambda root: (root / "exp17" / "meta.json").mkdir(parents=True), "meta.json is in the way (not a file)"),
])
def test_refresh_with_a_file_in_the_way_is_one_line(tmp_path, monkeypatch, capsys, in_the_way, named):
    monkeypatch.setattr(harness.baselines, "run_ci_size", lambda *a: pytest.fail("ran the experiment"))
    root = tmp_path / "baselines"
    in_the_way(root)
    assert main(["refresh", "exp17", "--dir", str(root)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(f"harness.baselines: error: cannot write the baseline to {root / 'exp17'}: ")
    assert named in captured.err and "Traceback" not in captured.err


def test_refresh_that_cannot_write_is_one_line(tmp_path, fresh_run_is, monkeypatch, capsys):
    from test_compare import make_run

    fresh_run_is(make_run(tmp_path / "run"))

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(harness.baselines, "write_atomic", full_disk)
    assert main(["refresh", "exp17", "--dir", str(tmp_path / "baselines")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "cannot write the baseline to" in err and "No space left on device" in err and "summary.csv" in err


def test_the_baselines_are_installed_with_the_package(tmp_path: Path) -> None:
    """A plain (not editable) install finds them: they are package data of `experiments`."""
    import zipfile

    pytest.importorskip("setuptools")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel, = tmp_path.glob("dezero_memlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for minor in ("3.11", "3.12", "3.13"):  # one set per Python minor version
        for experiment in CI_SIZES:
            assert {f"experiments/baselines/python{minor}/{experiment}/summary.csv",
                    f"experiments/baselines/python{minor}/{experiment}/meta.json"} <= names
