"""One honest status: a run says what went wrong first -- interrupted, a
trial failed, a check failed, or ok -- in the terminal, meta.json, `show`
and the exit code, and `run` and `check` agree on every run. Progress is
visible in a log, silenced by --quiet; list/show/check/compare speak JSON
and CSV for machines."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import harness
from engine.interface import DezeroStyleEngine
from engine.variants import Variant, register
from harness.cli import main
from harness.results import read_meta
from test_faults import RAISES, faulty_engine  # a file: engine whose square does a fault on its n-th call

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--param", "gc=off", "--param", "iterations=3", "--no-plots"]
# weakref switched to strong outputs in every trial: its checks fail, its trials run.
LEAKY_WEAKREF = """
from engine.interface import DezeroStyleEngine
from engine.variants import Variant, register

def load():
    import engine
    return DezeroStyleEngine(engine, "weakref", {"weak_outputs": False, "free_intermediate_grads": False})

register(Variant("weakref", "step 17, switched to strong outputs", "deliberately leaking", load))
"""


def harness_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("leaky")
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(LEAKY_WEAKREF, encoding="utf-8")
    done = harness_cli("run", "exp17", "--variant", "weakref", *SMALL, "--env", f"PYTHONPATH={tmp / 'site'}",
                       "--out", str(tmp / "out"), cwd=tmp)
    return done, Path(done.stdout.strip().splitlines()[-1])


def test_a_run_whose_checks_fail_says_so_everywhere(leaky_run, capsys: pytest.CaptureFixture) -> None:
    done, run_dir = leaky_run
    assert done.returncode == 1, done.stdout + done.stderr
    assert "status: checks_failed" in done.stdout
    assert "FAIL trial 0 weakref: numpy_bytes_final == 320,000 (measured 960,000)" in done.stdout
    meta = read_meta(run_dir)
    assert (meta["status"], meta["checks_failed"], meta["failed_trials"]) == ("checks_failed", 2, [])
    assert main(["show", str(run_dir)]) == 0
    assert "status checks_failed" in capsys.readouterr().out
    assert main(["check", str(run_dir)]) == 1  # the same verdict as run's
    out = capsys.readouterr().out
    assert "checks: 0 passed, 2 failed" in out and "run status" not in out  # the trials themselves ran


def test_a_registered_variant_that_breaks_its_model_is_checks_failed_in_the_api(tmp_path: Path) -> None:
    def load():
        import engine
        return DezeroStyleEngine(engine, "strongref", {"weak_outputs": False, "free_intermediate_grads": False})

    register(Variant("claims_weakref", "test", "strong outputs judged by weakref's model", load,
                     model_as="weakref"))
    run = harness.run("exp17", variants=["claims_weakref"], params={"gc": "off", "iterations": 2}, out=tmp_path,
                      progress=False, plots=False)
    assert run.meta["status"] == "checks_failed" and not all(c.passed for c in run.checks())
    assert "status <b>checks_failed</b>" in run._repr_html_()


@pytest.mark.parametrize("case, status, code", [("ok", "ok", 0), ("trial failed", "failed", 1)])
def test_the_exit_status_follows_the_run_status_and_check_agrees(case: str, status: str, code: int,
                                                                 tmp_path: Path) -> None:
    variants = ["--variant", "weakref"]
    if case == "trial failed":
        variants += ["--variant", faulty_engine(tmp_path, "raises", RAISES, on_call=2)]
    done = harness_cli("run", "exp17", *variants, *SMALL, "--out", "out", cwd=tmp_path)
    assert done.returncode == code, done.stdout + done.stderr
    run_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    assert read_meta(run_dir)["status"] == status and f"status: {status}" in done.stdout
    assert harness_cli("check", str(run_dir), cwd=tmp_path).returncode == code


def test_progress_is_a_line_per_trial_in_a_log_and_quiet_silences_it(tmp_path: Path) -> None:
    logged = harness_cli("run", "exp17", *SMALL, "--out", "out", cwd=tmp_path)  # stderr is a pipe, not a terminal
    lines = [line for line in logged.stderr.splitlines() if line.startswith("exp17: trial ")]
    assert [line.split(" (")[0] for line in lines] == [
        "exp17: trial 1/3 strongref r0: ok", "exp17: trial 2/3 weakref r0: ok", "exp17: trial 3/3 no_grad r0: ok"]
    quiet = harness_cli("run", "exp17", *SMALL, "--quiet", "--out", "out", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("views")
    done = harness_cli("run", "exp17", *SMALL, "--quiet", cwd=tmp)  # under ./results, as a user's would be
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / done.stdout.strip().splitlines()[-1]


def views(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = harness_cli(*args, cwd=cwd)
    assert done.stderr == "", done.stderr
    return done


def test_show_and_check_speak_json_and_csv(finished_run: Path) -> None:
    cwd = finished_run.parent.parent.parent
    shown = json.loads(views("show", str(finished_run), "--format", "json", cwd=cwd).stdout)
    assert shown["meta"]["status"] == "ok"
    by_variant = {row["variant"]: row for row in shown["summary"]}
    assert by_variant["weakref"]["numpy_bytes_final"] == 320_000
    assert by_variant["weakref"]["bound_numpy_bytes_final"] is None  # missing is null, never NaN
    table = pd.read_csv(io.StringIO(views("show", str(finished_run), "--format", "csv", cwd=cwd).stdout))
    assert table.set_index("variant").loc["strongref", "numpy_bytes_final"] == 960_000
    checked = json.loads(views("check", str(finished_run), "--format", "json", cwd=cwd).stdout)
    assert checked["passed"] is True and checked["run_status"] == "ok" and len(checked["checks"]) == 6
    assert {"trial": 1, "variant": "weakref", "measured": 320_000, "expected": 320_000}.items() \
        <= checked["checks"][2].items()
    rows = pd.read_csv(io.StringIO(views("check", str(finished_run), "--format", "csv", cwd=cwd).stdout))
    assert list(rows["passed"]) == [True] * 6


def test_list_and_compare_speak_json_and_csv(finished_run: Path) -> None:
    cwd = finished_run.parent.parent.parent
    listed = json.loads(views("list", "--format", "json", cwd=cwd).stdout)
    exp17 = next(e for e in listed["experiments"] if e["name"] == "exp17")
    assert exp17["variants"] == ["strongref", "weakref", "no_grad"]
    assert {"name": "iterations", "default": [10]}.items() <= exp17["params"][0].items()
    assert {p["name"] for p in listed["probes"] if p["default"]} >= {"tracemalloc", "gc"}
    kinds = pd.read_csv(io.StringIO(views("list", "--format", "csv", cwd=cwd).stdout))["kind"]
    assert set(kinds) == {"experiment", "variant", "probe"}
    compared = harness_cli("compare", str(finished_run), str(finished_run), "--format", "json", cwd=cwd)
    document = json.loads(compared.stdout)
    assert compared.returncode == document["exit_code"] == 0 and document["verdict"].startswith("PASS")
    row = next(r for r in document["rows"] if r["trial"] == "weakref" and r["metric"] == "numpy_bytes_final")
    assert (row["baseline"], row["current"], row["verdict"]) == (320_000, 320_000, "ok")


def test_a_run_is_named_by_its_experiment_or_latest(finished_run: Path, capsys: pytest.CaptureFixture) -> None:
    cwd = finished_run.parent.parent.parent
    for name in ("exp17", "latest"):
        shown = views("show", name, "--format", "json", cwd=cwd)
        assert json.loads(shown.stdout)["path"] == str(finished_run.relative_to(cwd))
    missing = harness_cli("show", "exp16", cwd=cwd)
    assert missing.returncode == 2
    assert missing.stderr == ("harness: error: exp16 is neither a run directory nor an experiment with a run "
                              "under results/\n")


def test_baselines_is_a_subcommand(tmp_path: Path) -> None:
    helped = harness_cli("--help", cwd=tmp_path)
    assert "baselines" in helped.stdout
    listed = harness_cli("baselines", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("exp16  {'iterations': 5, 'size': 1000}")
    wrong = harness_cli("baselines", "refrsh", cwd=tmp_path)
    assert wrong.returncode == 2 and len(wrong.stderr.splitlines()) == 1
    assert wrong.stderr.startswith("harness baselines: error: argument action: invalid choice: 'refrsh'")
