"""Hardening: a run directory is data, every way a trial can end ends it, and
bad values get one line -- each case injected, then checked."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import harness
from test_faults import faulty_engine  # a file: engine whose square does a fault on its n-th call

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


# --- a run directory never runs code -------------------------------------------------------

PAYLOAD = textwrap.dedent("""
    from pathlib import Path
    Path(__file__).with_name("PAYLOAD_RAN").write_text("imported")
    from engine.core import *  # noqa: F401,F403
""")


@pytest.mark.parametrize("recorded_model", [True, False], ids=["model recorded", "old run without the column"])
def test_check_and_load_never_import_a_variant_named_in_the_run(tmp_path: Path, recorded_model: bool) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=tmp_path, plots=False,
                      progress=False)
    payload = run.path / "payload.py"  # the payload can sit inside the run directory itself
    payload.write_text(PAYLOAD, encoding="utf-8")
    summary = pd.read_csv(run.path / "summary.csv")
    assert summary.loc[0, "model_variant"] == "weakref" and summary.loc[0, "model_source"] == "built-in"
    summary["variant"] = f"file:{payload}"
    if not recorded_model:
        summary = summary.drop(columns=["model_variant", "model_source"])
    summary.to_csv(run.path / "summary.csv", index=False)

    checked = cli("check", str(run.path), cwd=tmp_path)
    checks = harness.load(run.path).checks()
    assert not (run.path / "PAYLOAD_RAN").exists()
    if recorded_model:  # judged by the model recorded at run time
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "PASS" in checked.stdout and len(checks) == 2 and all(c.passed for c in checks)
    else:  # no model known without importing the engine: nothing judged, and it says so
        assert checks == []
        assert "no expectation applies" in checked.stdout
        assert checked.returncode == 0  # as `run` said of it: nothing failed


# --- every way a trial can end ends it -------------------------------------------------------

ENDS = textwrap.dedent("""
    import os, signal, subprocess, sys
    from engine.core import *  # noqa: F401,F403
    from engine import core as _core

    calls = 0

    def square(x):
        global calls
        calls += 1
        if calls == 4:
            {action}
        return _core.square(x)
""")


@pytest.mark.parametrize("action, reason", [
    ("raise SystemExit(3)", "SystemExit: 3"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("os.kill(os.getpid(), signal.SIGINT)", "KeyboardInterrupt"),
])
def test_a_workload_that_exits_or_is_interrupted_ends_its_trial_and_the_run_finishes(
        tmp_path: Path, action: str, reason: str) -> None:
    engine = tmp_path / "ends.py"
    engine.write_text(ENDS.replace("{action}", action), encoding="utf-8")
    done = cli("run", "exp17", "--variant", f"file:{engine}", "--variant", "no_grad", "--param", "iterations=3",
               "--no-plots", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=120)  # the sampled probe is on
    assert done.returncode == 1, done.stdout + done.stderr
    summary = pd.read_csv(Path(done.stdout.splitlines()[-1]) / "summary.csv").set_index("variant")
    assert summary.loc[f"file:{engine}", "status"] == "failed"
    assert summary.loc[f"file:{engine}", "error"].startswith(reason)
    assert summary.loc["no_grad", "status"] == "ok"


SPAWNS = textwrap.dedent("""
    import subprocess, sys
    from pathlib import Path
    from engine.core import *  # noqa: F401,F403

    # A plugin that starts a process of its own and forgets it.
    _child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(__file__).with_name("child.pid").write_text(str(_child.pid))
""")


def test_processes_a_plugin_starts_end_with_its_trial(tmp_path: Path) -> None:
    import psutil

    engine = tmp_path / "spawns.py"
    engine.write_text(SPAWNS, encoding="utf-8")
    done = cli("run", "exp17", "--variant", f"file:{engine}", "--param", "iterations=2", "--no-plots",
               "--probe", "tracemalloc", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    child = int((tmp_path / "child.pid").read_text())
    try:
        process = psutil.Process(child)
        assert process.status() == psutil.STATUS_ZOMBIE or not process.is_running()
    except psutil.NoSuchProcess:
        pass


def test_a_plugin_that_exits_at_import_is_one_line_and_the_harness_goes_on(tmp_path: Path) -> None:
    engine = tmp_path / "exits.py"
    engine.write_text("import os\nos._exit(7)\n", encoding="utf-8")
    done = cli("run", "exp17", "--variant", f"file:{engine}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"harness: error: variant 'file:{engine}': importing it ended the process "
                                   "(exit status 7)")
    assert not (tmp_path / "out").exists()  # refused before anything is written


# --- signals and bad values ------------------------------------------------------------------

def test_sighup_stops_the_run_like_sigterm_and_keeps_what_it_measured(tmp_path: Path) -> None:
    import json
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", "weakref", "--param", "iterations=1000000",
         "--param", "size=10", "--probe", "tracemalloc", "--no-plots", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("exp17/*/trials/*.samples")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGHUP)  # what a closing terminal sends its session
        stdout, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGHUP
    run = Path(stdout.splitlines()[-1])
    meta = json.loads((run / "meta.json").read_text())
    assert (meta["status"], meta["interrupted_by"]) == ("interrupted", "SIGHUP")
    assert len(pd.read_csv(run / "samples.csv")) > 10


@pytest.mark.parametrize("args, message", [
    (["--timeout", "3000000"], "--timeout must be a number of seconds above 0 and at most 2,147,483 (24 days)"),
    (["--repeats", "100000000"], "the plan has 300,000,000 trials; one run takes at most 100,000"),
    (["--param", "size=10", "--param", "size=20"], "--param size is given twice; sweep with --param size=V1,V2"),
    (["--param", "size=inf"], "parameter 'size' takes a whole number, got 'inf'"),
])
def test_bad_run_values_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = cli("run", "exp17", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().startswith(f"harness: error: {message}")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_jobs_and_repeats_read_1e1_like_parameters(tmp_path: Path) -> None:
    done = cli("run", "exp17", "--variant", "weakref", "--repeats", "2e0", "--jobs", "1e0", "--param",
               "iterations=1", "--probe", "tracemalloc", "--no-plots", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("kwargs, message", [
    ({"params": {"size": []}}, "parameter 'size' has no value"),
    ({"trial_env": {"A": 1}}, "--env A: the value must be a string, got 1"),
    ({"trial_env": ["A=1"]}, "trial_env must map names to values, got list"),
    ({"timeout_s": "10"}, "--timeout must be a number of seconds"),
])
def test_bad_api_values_are_usage_errors_not_type_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    from harness.errors import UsageError

    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        harness.run("exp17", variants=["weakref"], out=tmp_path, plots=False, progress=False, **kwargs)


def test_numpy_integers_are_parameter_values(tmp_path: Path) -> None:
    import numpy as np

    run = harness.run("exp17", variants=["weakref"], params={"iterations": np.int64(2), "size": np.int32(100)},
                      out=tmp_path, plots=False, progress=False, probes=["tracemalloc"])
    assert run.summary.loc[0, "numpy_bytes_final"] == 4 * 800


# --- corrupt run directories that are still valid JSON or CSV ------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    return harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=out, plots=False,
                       progress=False).path


def _damaged_copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    return copy


META_DAMAGE = {
    "experiment a list": (lambda m: m.update(experiment=["exp17"]), "'experiment' is a list, not a str"),
    "params null": (lambda m: m.update(params=None), "'params' is a NoneType, not a dict"),
    "params a list": (lambda m: m.update(params=[1]), "'params' is a list, not a dict"),
    "params a str": (lambda m: m.update(params="size"), "'params' is a str, not a dict"),
    "python a number": (lambda m: m.update(python=3.11), "'python' is a float, not a str"),
}


@pytest.mark.parametrize("damage", list(META_DAMAGE), ids=list(META_DAMAGE))
@pytest.mark.parametrize("command", ["check", "show", "compare"])
def test_valid_json_of_the_wrong_shape_is_one_line(finished_run: Path, tmp_path: Path, damage: str,
                                                   command: str) -> None:
    import json

    damaged = _damaged_copy(finished_run, tmp_path)
    meta = json.loads((damaged / "meta.json").read_text())
    change, message = META_DAMAGE[damage]
    change(meta)
    (damaged / "meta.json").write_text(json.dumps(meta))
    args = [command, str(damaged)] + ([str(finished_run)] if command == "compare" else [])
    done = cli(*args, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"harness: error: {damaged / 'meta.json'} is corrupt: {message}"]


def test_json_nested_too_deeply_is_one_line(finished_run: Path, tmp_path: Path) -> None:
    damaged = _damaged_copy(finished_run, tmp_path)
    (damaged / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    done = cli("check", str(damaged), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "nested too deeply" in done.stderr and len(done.stderr.strip().splitlines()) == 1


SUMMARY_DAMAGE = {
    "int variants": (lambda t: t.assign(variant=7), None),
    "a duplicated header": (lambda t: t.rename(columns={"numpy_bytes_peak": "numpy_bytes_final"}),
                            "column 'numpy_bytes_final' appears twice"),
    "the header as a row": (lambda t: pd.concat([t, pd.DataFrame([t.columns], columns=t.columns)]),
                            "holds something that is not a number"),
    "size=0": (lambda t: t.assign(size=0), "summary.csv, trial 0: parameter 'size' must be at least 1; got 0"),
    "size=inf": (lambda t: t.assign(size=float("inf")), "summary.csv, trial 0: parameter 'size' takes a whole number"),
}


@pytest.mark.parametrize("damage", list(SUMMARY_DAMAGE), ids=list(SUMMARY_DAMAGE))
def test_a_summary_of_the_wrong_shape_is_one_line(finished_run: Path, tmp_path: Path, damage: str) -> None:
    import json

    damaged = _damaged_copy(finished_run, tmp_path)
    change, message = SUMMARY_DAMAGE[damage]
    table = change(pd.read_csv(damaged / "summary.csv"))
    table.to_csv(damaged / "summary.csv", index=False)
    meta = json.loads((damaged / "meta.json").read_text())
    meta["tables"]["summary"]["rows"] = len(table)
    (damaged / "meta.json").write_text(json.dumps(meta))
    done = cli("check", str(damaged), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    if message is None:  # a number where a name was: read as the name "7", judged by the recorded model
        assert done.returncode == 0 and "PASS trial 0 7:" in done.stdout
        return
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_run_files_are_as_readable_as_its_plots(finished_run: Path) -> None:
    modes = {path.name: path.stat().st_mode & 0o777 for path in finished_run.iterdir() if path.is_file()}
    assert modes["summary.csv"] == modes["meta.json"] == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_broken_pipe_is_not_an_error(finished_run: Path, tmp_path: Path) -> None:
    shown = subprocess.run(f"{sys.executable} -m harness show {finished_run} | head -c 1", shell=True,
                           capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           executable="/bin/bash")
    # the reader is gone before the harness writes a byte
    piped = subprocess.run(["bash", "-c", f"set -o pipefail; {{ sleep 0.5; {sys.executable} -m harness list; }} | true"],
                           capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Errno 32" not in shown.stderr + piped.stderr and "Traceback" not in shown.stderr + piped.stderr
    assert piped.returncode == 0


def test_a_signal_after_every_trial_finished_leaves_the_run_complete(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from harness import runner

    real = runner.run_trials

    def then_a_signal(specs, config, progress, interruption=None, finished=lambda spec, outcome: None, **more):
        outcomes = real(specs, config, progress, interruption, finished, **more)
        interruption.stop(signal.SIGTERM)  # as if it came while the tables were written
        return outcomes

    monkeypatch.setattr(runner, "run_trials", then_a_signal)
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=tmp_path, plots=False,
                      progress=False, probes=["tracemalloc"])
    assert run.meta["status"] == "ok" and run.meta["interrupted_by"] is None


def test_an_interrupt_does_not_overwrite_a_trial_s_own_error(tmp_path: Path) -> None:
    import signal

    from harness.runner import Interruption, execute_trial
    from harness.trial import TrialSpec

    engine = tmp_path / "raises.py"
    engine.write_text("from engine.core import *\n\ndef square(x):\n    raise ValueError('broken square')\n")

    class SignalWhileRunning(Interruption):
        def started(self, process):
            super().started(process)
            self.signum = signal.SIGINT  # the run is being stopped; this trial fails on its own

    spec = TrialSpec(trial=0, experiment="exp17", variant=f"file:{engine}",
                     params={"iterations": 2, "size": 10, "depth": 1, "gc": "on", "seed": 0, "dtype": "float64"},
                     repeat=0, seed=0, probes=["tracemalloc"], events_path=str(tmp_path / "t.jsonl"))
    outcome = execute_trial(spec, timeout_s=60, env={}, interruption=SignalWhileRunning())
    assert outcome.status == "failed" and outcome.error == "ValueError: broken square"


# --- a full disk ---------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path):
    """A 400 kB file system of its own (tmpfs; needs root, as this machine's CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_disk_that_fills_up_marks_the_run_failed_and_shows_what_was_measured(small_disk: Path) -> None:
    import json

    done = cli("run", "exp17", "--variant", "weakref", "--param", "iterations=3000", "--param", "size=10",
               "--probe", "tracemalloc", "--out", str(small_disk), cwd=small_disk.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "harness: error: writing the results failed: No space left on device")
    assert "weakref" in done.stdout and "320" in done.stdout  # the measured summary is printed
    (run,) = (small_disk / "exp17").iterdir()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "failed" and "No space left on device" in meta["error"]
    assert not list(run.glob(".*.tmp"))  # no temporary file left behind


def test_an_already_full_disk_leaves_no_empty_run_directory(small_disk: Path) -> None:
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as stream, contextlib.suppress(OSError):
        while True:
            stream.write(b"\0" * 4096)
            stream.flush()
    done = cli("run", "exp17", "--variant", "weakref", "--param", "iterations=2", "--out", str(small_disk),
               cwd=small_disk.parent)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nothing was run" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    experiment_dir = small_disk / "exp17"
    assert not experiment_dir.exists() or not any(experiment_dir.iterdir())


def test_verify_observer_with_an_output_directory_named_like_a_log(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=tmp_path / "runs.jsonl",
                      plots=False, progress=False, probes=["tracemalloc", "gc"], verify_observer=True)
    assert run.meta["status"] == "ok"
    assert list(run.path.glob("trials/*-blind.jsonl"))


# --- the last low items: a trial's time, a silent exit, Ctrl-C at once ------------------------

def test_the_timeout_counts_the_overhead_re_runs_as_workload_runs() -> None:
    from harness.runner import RunConfig, trial_timeout
    from harness.trial import OVERHEAD_ROUNDS

    assert trial_timeout(RunConfig("exp17", timeout_s=2.0), probes=1) == 2.0
    # the measured run and, per round, a bare run, one with every probe and one per probe
    assert trial_timeout(RunConfig("exp17", timeout_s=2.0, measure_overhead=True), probes=1) == \
        2.0 * (1 + OVERHEAD_ROUNDS * 3)


def test_a_timeout_in_the_overhead_re_runs_keeps_the_measurement(tmp_path: Path) -> None:
    from harness.runner import execute_trial
    from harness.trial import TrialSpec

    # exp17 with 10 iterations of depth 3 squares 30 times a run: the 100th
    # call is in the third re-run, after the measured run.
    variant = faulty_engine(tmp_path, "slow_later", "time.sleep(600)", on_call=100)
    from harness.registry import get_experiment

    params = {**get_experiment("exp17").defaults(), "iterations": 10}
    spec = TrialSpec(0, "exp17", variant, params, 0, 0, ["tracemalloc"], str(tmp_path / "0.jsonl"),
                     measure_overhead=True)
    outcome = execute_trial(spec, 4.0, {})
    assert (outcome.status, outcome.error) == ("ok", "")
    assert outcome.result["samples"] == 11 and len(outcome.samples()) == 11  # the start and ten iterations
    assert outcome.result["overhead_not_measured"] == "the --overhead re-runs exceeded the trial's 4 s"
    assert "overhead_all_probes" not in outcome.result


@pytest.mark.parametrize("status", [0, 3])
def test_a_trial_that_ends_its_own_process_is_named_so(tmp_path: Path, status: int) -> None:
    variant = faulty_engine(tmp_path, "exits", f"os._exit({status})", on_call=3)
    done = cli("run", "exp17", "--variant", variant, "--no-plots", "--out", str(tmp_path / "out"), cwd=tmp_path,
               timeout=120)  # every default probe: the sampled probe's watcher runs beside it
    assert done.returncode == 1, done.stderr
    assert (f"failed: the trial process exited with status {status} before the workload finished, recording "
            "no error: the workload or engine ended it (os._exit, or a crash in native code)") in done.stdout


def test_ctrl_c_as_the_run_starts_leaves_a_run_recorded_as_interrupted(tmp_path: Path) -> None:
    """The signal lands while the run directory is new and meta.json is being written."""
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "harness", "run", "exp17", "--out", str(out)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not (out / "exp17").is_dir() or not any((out / "exp17").iterdir()):
        assert time.monotonic() < deadline and process.poll() is None, "the run never made its directory"
    process.send_signal(signal.SIGINT)  # at once: before its first trial, likely before meta.json
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (run,) = (out / "exp17").iterdir()
    from harness.results import read_meta

    meta = read_meta(run)
    assert meta["status"] == "interrupted" and meta["interrupted_by"] == "SIGINT"
    assert "Traceback" not in stderr
