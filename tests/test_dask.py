"""Trials on a Dask cluster (`--executor dask`): the same tables as a local run.

Each trial is one task on a Dask worker that starts the same fresh trial
process; its files come back and are read as a local trial's. These tests
run on a LocalCluster the run starts itself (two worker processes, one
thread each). Faults are injected the way a user's engine would cause them:
a `file:` engine whose `square` kills the worker process that started its
trial (the trial's parent), or hangs.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import psutil
import pytest

import harness
from harness.errors import UsageError
from harness.probes import sample_columns_for
from harness.probes.sampler import read_samples
from harness.trial import sample_file
from test_faults import wait_for  # poll until a condition holds, or fail saying what was awaited


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        message = 'Dask distributed is not installed: pip install -e ".[dask]"'
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def needs_distributed() -> None:
    _require_distributed()


QUIET = dict(progress=False, plots=False)
# The figures the README calls exact: a trial on a worker must give the same as here.
EXACT_SUMMARY = [
    "status", "python", "gc_threshold_gen0", "gc_threshold_gen1", "gc_threshold_gen2", "iterations_completed",
    "numpy_bytes_final", "numpy_bytes_peak", "bytes_per_iteration", "gc_collections", "gc_collections_gen0",
    "gc_collections_gen1", "gc_collections_gen2", "gc_collected_objects", "gc_uncollectable",
    "live_variables_final", "live_functions_final", "observer_neutral", "foreign_traced_bytes",
    "expected_numpy_bytes_final", "expected_numpy_bytes_peak", "bound_numpy_bytes_final", "bound_numpy_bytes_peak",
]
EXACT_SAMPLES = ["trial", "sample", "iteration", "phase", "numpy_bytes", "numpy_bytes_peak", "live_variables",
                 "live_functions", "gc_count_gen0", "gc_count_gen1", "gc_count_gen2"]


def descendants() -> set[int]:
    """This process's children and theirs, but multiprocessing's resource tracker (which
    lives as long as the process that started the cluster's first worker)."""
    found = set()
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "resource_tracker" not in " ".join(process.cmdline()):
                found.add(process.pid)
    return found


def still_running(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


# --- the same figures as a local run ---------------------------------------------------------

@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[harness.Run, harness.Run]:
    params = {"size": [100, 10_000], "iterations": 200}  # exp17_sweep's 200 iterations: collections fall
    local = harness.run("exp17_sweep", params=params, out=tmp_path_factory.mktemp("local"), **QUIET)
    before = descendants()
    on_dask = harness.run("exp17_sweep", params=params, out=tmp_path_factory.mktemp("dask"), jobs=2,
                          executor="dask", **QUIET)
    assert not still_running(descendants() - before), "the LocalCluster or a trial outlived the run"
    return local, on_dask


def test_a_sweep_on_two_workers_gives_every_exact_figure_of_a_local_run(sweep_runs) -> None:
    local, on_dask = sweep_runs
    assert len(on_dask.summary) == 6
    pd.testing.assert_frame_equal(on_dask.summary[EXACT_SUMMARY], local.summary[EXACT_SUMMARY])
    pd.testing.assert_frame_equal(on_dask.samples[EXACT_SAMPLES], local.samples[EXACT_SAMPLES])
    pd.testing.assert_frame_equal(on_dask.gc_events, local.gc_events)
    assert (on_dask.summary["gc_collections"] > 0).any()  # the collector ran, on the workers too


def test_its_checks_pass_and_its_tables_name_the_worker_of_each_trial(sweep_runs) -> None:
    _, on_dask = sweep_runs
    assert on_dask.meta["status"] == "ok"
    checks = on_dask.checks()
    assert checks and all(check.passed for check in checks)
    cluster = on_dask.meta["cluster"]
    assert cluster["executor"] == "dask" and cluster["scheduler"].startswith("tcp://")
    assert cluster["started_by_run"] and cluster["allowed_failures"] == 0
    assert len(cluster["workers"]) == 2
    summary = on_dask.summary
    assert set(summary["worker_address"]) <= set(cluster["workers"])
    assert set(summary["worker"]) == {os.uname().nodename}
    assert (summary["worker_memory_limit_bytes"] > 0).all() and (summary["worker_nthreads"] == 1).all()
    assert set(summary["worker_numpy"]) == {__import__("numpy").__version__}
    # the memory guard judged the plan by a worker's memory limit, not this machine's
    assert on_dask.meta["memory_guard"]["available_bytes"] == min(
        w["worker_memory_limit_bytes"] for w in cluster["workers"].values())
    # the trial's files came back under a local trial's names
    assert sorted(p.suffix for p in (on_dask.path / "trials").glob("0000-*")) == [".jsonl", ".log", ".phases",
                                                                                  ".samples"]


def test_a_local_run_has_no_worker_columns(sweep_runs) -> None:
    local, _ = sweep_runs
    assert "worker" not in local.summary and "cluster" not in local.meta


# --- faults ----------------------------------------------------------------------------------

ENGINE = """\
import os, signal, time
from engine import Config, Function, Variable
from engine import square as _square

calls = 0


def square(x):
    global calls
    calls += 1
    if calls == 3:
"""


def engine_file(directory: Path, name: str, fault: str) -> str:
    """A `file:` variant: this project's engine, but `square` does `fault` on its third call."""
    path = directory / f"{name}.py"
    path.write_text(ENGINE + textwrap.indent(fault, " " * 8) + "\n    return _square(x)\n", encoding="utf-8")
    return f"file:{path}"


# Only in a trial (its --env), and never in the test's own process: the trial's
# parent is the worker process that started it.
KILLS_ITS_WORKER = """\
marker = os.environ.get("KILL_WORKER_MARKER")
if marker and os.getppid() != int(os.environ["TEST_PROCESS"]):
    with open(marker, "a") as stream:
        stream.write(f"{os.getppid()}\\n")
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)  # dies with its worker"""


def test_a_worker_that_dies_mid_trial_fails_that_trial_and_the_run_completes(tmp_path: Path) -> None:
    killer = engine_file(tmp_path, "kills_its_worker", KILLS_ITS_WORKER)
    marker = tmp_path / "killed"
    before = descendants()
    run = harness.run("exp17", variants=[killer, "weakref", "no_grad"], params={"iterations": 4, "depth": 1},
                      jobs=2, out=tmp_path / "out", executor="dask", probes=["tracemalloc"],
                      trial_env={"KILL_WORKER_MARKER": str(marker), "TEST_PROCESS": str(os.getpid())}, **QUIET)
    summary = run.summary.set_index("variant")
    assert summary.loc[killer, "status"] == "failed"
    assert "died while running it" in summary.loc[killer, "error"]
    assert summary.loc[killer, "worker_address"] in run.meta["cluster"]["workers"]
    assert list(summary.loc[["weakref", "no_grad"], "status"]) == ["ok", "ok"]
    assert run.meta["status"] == "failed"
    assert [t["variant"] for t in run.meta["failed_trials"]] == [killer]
    assert len(marker.read_text().split()) == 1  # the dead worker's trial was not run again
    assert not still_running(descendants() - before), "a worker or trial outlived the run"


def test_ctrl_c_stops_the_trials_on_their_workers_keeps_what_they_measured_and_exits_130(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the LocalCluster's workers keep their scratch directories under TMPDIR
    scratch.mkdir()
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", "weakref", "--variant", "no_grad",
         "--param", "iterations=1000000", "--param", "size=10", "--probe", "tracemalloc", "--jobs", "2",
         "--executor", "dask", "--no-plots", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(scratch)}, start_new_session=True)  # a terminal's foreground group
    try:
        wait_for(lambda: len([log for log in scratch.glob("dask-scratch-space/*/*/*.jsonl")
                              if sample_rows(log) >= 3]) == 2, "both trials' samples on their workers",
                 seconds=60)
        tree = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
        os.killpg(process.pid, signal.SIGINT)  # the whole group, workers included, as a terminal does
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = next((out / "exp17").iterdir())
    recorded = json.loads((run / "meta.json").read_text(encoding="utf-8"))
    assert (recorded["status"], recorded["interrupted_by"]) == ("interrupted", "SIGINT")
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.status) == ["interrupted", "interrupted"]
    assert set(summary.error) == {"stopped by SIGINT to the run"}
    samples = pd.read_csv(run / "samples.csv")
    assert set(samples.variant) == {"weakref", "no_grad"}  # what the stopped trials measured came back
    assert (samples.groupby("variant").size() >= 3).all()
    assert not still_running(tree), "a worker or trial outlived the run"


def sample_rows(log: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        return len(read_samples(sample_file(log), sample_columns_for(["tracemalloc"])))
    return 0


# --- bad input: one line, exit 2 -------------------------------------------------------------

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("address", ["nonsense", "tcp://host-without-port", "tcp://host:99999", "http://host:8786"])
def test_a_bad_scheduler_address_is_one_line_and_exit_2(tmp_path: Path, address: str) -> None:
    done = cli("run", "exp17", "--executor", "dask", "--scheduler", address, "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--scheduler" in done.stderr and "tcp://" in done.stderr, done.stderr
    assert not list(tmp_path.glob("exp17"))  # nothing written


def test_a_scheduler_nobody_answers_at_is_one_line_and_exit_2(tmp_path: Path, monkeypatch) -> None:
    from harness import dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(UsageError, match=r"--scheduler tcp://127.0.0.1:9: cannot reach a Dask scheduler there"):
        harness.run("exp17", executor="dask", scheduler="tcp://127.0.0.1:9", out=tmp_path, **QUIET)
    assert not list(tmp_path.glob("exp17"))


def test_a_scheduler_without_the_dask_executor_is_refused(tmp_path: Path) -> None:
    done = cli("run", "exp17", "--scheduler", "tcp://127.0.0.1:8786", "--out", str(tmp_path), cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "harness: error: --scheduler needs --executor dask\n")


def test_without_distributed_the_error_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed: its import fails
    with pytest.raises(UsageError, match=r'pip install -e "\.\[dask\]"'):
        harness.run("exp17", executor="dask", out=tmp_path, **QUIET)
