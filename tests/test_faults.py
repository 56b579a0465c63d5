"""Faults injected into real runs: what is recorded, and that nothing earlier is lost.

Faults in a workload are injected the way a user's engine would cause them:
a `file:` engine (the documented plugin interface) whose `square` raises,
kills its own process with SIGKILL, or hangs, at a chosen call. Nothing in
the product knows about these tests.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import psutil
import pytest

import harness
from harness.errors import UsageError
from harness.guard import ADDRESS_SPACE_ALLOWANCE, INTERPRETER_BYTES, OBJECT_BYTES_PER_ARRAY, human_bytes
from harness.results import new_run_dir, write_atomic
from harness.runner import execute_trial
from harness.probes import sample_columns_for
from harness.probes.sampler import read_samples
from harness.trial import TrialSpec, sample_file

FAST = ["--no-plots", "--no-overhead", "--probe", "tracemalloc"]


def faulty_engine(directory: Path, name: str, fault: str, on_call: int = 3) -> str:
    """A `file:` variant: this project's engine, but `square` does `fault` on its n-th call."""
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(f"""\
        import os, signal, time
        from engine import Config, Function, Variable
        from engine import square as _square

        calls = 0

        def square(x):
            global calls
            calls += 1
            if calls == {on_call}:
                {fault}
            return _square(x)
        """), encoding="utf-8")
    return f"file:{path}"


RAISES = 'raise RuntimeError("injected fault in square")'
KILLS_ITSELF = "os.kill(os.getpid(), signal.SIGKILL)"
HANGS = "time.sleep(600)"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


STARTED: list[subprocess.Popen] = []


def start_cli(*args: str, cwd: Path) -> subprocess.Popen:
    # A session of its own, like a shell's foreground job: a signal to its
    # process group is what a terminal's Ctrl-C sends.
    process = subprocess.Popen([sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True)
    STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def no_run_outlives_its_test():
    """A test that fails half-way must not leave its long run (and its trial) running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def only_run(out: Path) -> Path:
    runs = sorted((out / "exp17").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text(encoding="utf-8"))


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def sample_rows(log: Path) -> int:
    """Whole sample rows a trial has written so far (FAST runs the tracemalloc probe alone)."""
    return len(read_samples(sample_file(log), sample_columns_for(["tracemalloc"])))


def first_trial_has_samples(out: Path, lines: int = 3) -> Callable[[], bool]:
    def check() -> bool:
        logs = sorted(out.glob("exp17/*/trials/*.jsonl"))
        return bool(logs) and sample_rows(logs[0]) >= lines
    return check


@pytest.fixture(scope="module")
def out_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="module")
def earlier_run(out_root: Path) -> tuple[Path, dict[str, str]]:
    """A finished run every fault below must leave byte for byte as it was."""
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 2}, out=out_root,
                      measure_overhead=False, plots=False, progress=False, probes=["tracemalloc"])
    return run.path, file_hashes(run.path)


def assert_untouched(earlier: tuple[Path, dict[str, str]]) -> None:
    path, hashes = earlier
    assert file_hashes(path) == hashes


# --- a trial that raises or is killed; the others still run --------------------------------

@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    work = tmp_path_factory.mktemp("faulty")
    variants = [faulty_engine(work, "raises", RAISES), faulty_engine(work, "kills_itself", KILLS_ITSELF), "weakref"]
    args = ["run", "exp17", "--param", "iterations=4", "--param", "depth=1", "--out", str(work / "out"), *FAST]
    for variant in variants:
        args += ["--variant", variant]
    done = cli(*args, cwd=work)
    return done, only_run(work / "out"), variants


def test_a_trial_that_raises_is_failed_with_its_reason_and_its_samples(faulty_run) -> None:
    done, run, (raises, _, _) = faulty_run
    summary = pd.read_csv(run / "summary.csv").set_index("variant")
    assert summary.loc[raises, "status"] == "failed"
    assert summary.loc[raises, "error"] == "RuntimeError: injected fault in square"
    # depth 1: square's third call is in iteration 2, so iterations 0 and 1 were measured
    assert summary.loc[raises, "iterations_completed"] == 2
    samples = pd.read_csv(run / "samples.csv")
    assert list(samples[samples.variant == raises].phase) == ["start", "end", "end"]
    assert f"{raises} failed: RuntimeError: injected fault in square" in done.stdout


def test_a_trial_killed_by_sigkill_is_recorded_with_its_samples(faulty_run) -> None:
    done, run, (_, kills_itself, _) = faulty_run
    summary = pd.read_csv(run / "summary.csv").set_index("variant")
    assert summary.loc[kills_itself, "status"] == "killed"
    assert summary.loc[kills_itself, "error"].startswith("killed by signal 9 (SIGKILL")
    samples = pd.read_csv(run / "samples.csv")
    assert list(samples[samples.variant == kills_itself].phase) == ["start", "end", "end"]


def test_the_other_trials_run_and_the_run_says_it_failed(faulty_run) -> None:
    done, run, (raises, kills_itself, _) = faulty_run
    summary = pd.read_csv(run / "summary.csv").set_index("variant")
    assert summary.loc["weakref", "status"] == "ok"
    assert summary.loc["weakref", "numpy_bytes_final"] == 2 * 80_000  # depth 1: x and one output
    recorded = meta(run)
    assert recorded["status"] == "failed"
    assert [(t["variant"], t["status"]) for t in recorded["failed_trials"]] == [
        (raises, "failed"), (kills_itself, "killed")]
    assert done.returncode == 1
    assert "status: failed" in done.stdout
    # a file engine has no analytic model: the guard says so and lets it run
    assert "the model makes no estimate for file:" in done.stderr
    assert len(recorded["memory_guard"]["without_estimate"]) == 2


def test_a_trial_over_its_timeout_is_stopped_with_its_samples(tmp_path: Path, out_root: Path, earlier_run) -> None:
    hangs = faulty_engine(tmp_path, "hangs", HANGS)
    done = cli("run", "exp17", "--variant", hangs, "--variant", "no_grad", "--param", "iterations=4",
               "--param", "depth=1", "--timeout", "3", "--out", str(out_root), *FAST, cwd=tmp_path)
    assert done.returncode == 1
    run = Path(done.stdout.splitlines()[-1])  # the run directory is the last line
    summary = pd.read_csv(run / "summary.csv").set_index("variant")
    assert summary.loc[hangs, "status"] == "timeout"
    assert summary.loc[hangs, "error"] == "exceeded --timeout 3 s"
    assert summary.loc[hangs, "iterations_completed"] == 2
    assert summary.loc["no_grad", "status"] == "ok"
    assert meta(run)["status"] == "failed"
    assert_untouched(earlier_run)


# --- the run itself is stopped --------------------------------------------------------------

LONG_RUN = ["run", "exp17", "--param", "iterations=1000000", "--param", "size=10", *FAST]


def test_ctrl_c_stops_the_run_keeps_its_samples_and_exits_130(tmp_path: Path, out_root: Path, earlier_run) -> None:
    out = tmp_path / "out"
    process = start_cli(*LONG_RUN, "--variant", "weakref", "--variant", "no_grad", "--out", str(out), cwd=tmp_path)
    wait_for(first_trial_has_samples(out), "the first trial's samples")
    trials = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGINT)  # the whole foreground group, as a terminal does
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = only_run(out)
    recorded = meta(run)
    assert (recorded["status"], recorded["interrupted_by"]) == ("interrupted", "SIGINT")
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.status) == ["interrupted", "interrupted"]
    assert summary.error[0] == "stopped by SIGINT to the run"
    assert summary.error[1] == "not started: the run was stopped by SIGINT"
    samples = pd.read_csv(run / "samples.csv")
    assert len(samples) >= 3 and set(samples.variant) == {"weakref"}
    assert recorded["tables"]["samples"]["rows"] == len(samples)
    assert not [p for p in trials if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert_untouched(earlier_run)


def test_sigterm_stops_concurrent_trials_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_cli(*LONG_RUN, "--variant", "weakref", "--variant", "no_grad", "--jobs", "2",
                        "--out", str(out), cwd=tmp_path)
    wait_for(lambda: len(list(out.glob("exp17/*/trials/*.jsonl"))) == 2
             and all(p.stat().st_size > 0 for p in out.glob("exp17/*/trials/*.jsonl")), "both trials")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    run = only_run(out)
    assert (meta(run)["status"], meta(run)["interrupted_by"]) == ("interrupted", "SIGTERM")
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.status) == ["interrupted", "interrupted"]
    assert set(summary.error) == {"stopped by SIGTERM to the run"}


def test_a_run_killed_outright_leaves_earlier_runs_intact_and_no_trial_behind(
    tmp_path: Path, out_root: Path, earlier_run
) -> None:
    before = set((out_root / "exp17").iterdir())
    process = start_cli(*LONG_RUN, "--variant", "weakref", "--out", str(out_root), cwd=tmp_path)
    wait_for(lambda: any(_has_samples(run) for run in set((out_root / "exp17").iterdir()) - before),
             "the new run's trial")
    trials = psutil.Process(process.pid).children(recursive=True)
    assert trials
    process.kill()  # SIGKILL: no handler runs, nothing is tidied up
    process.communicate(timeout=30)
    _, alive = psutil.wait_procs(trials, timeout=10)
    assert not alive, "a trial outlived its run"
    assert_untouched(earlier_run)
    killed, = set((out_root / "exp17").iterdir()) - before
    assert killed != earlier_run[0] and meta(killed)["status"] == "running"
    done = cli("show", str(killed), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"harness: error: {killed} has no results: meta.json says the run is still running "
                           "(it is, or it was killed before writing them)\n")
    assert not list(out_root.rglob("*.tmp"))
    # the streamed tables stay under names that say they are partial, never under a table's own name
    assert {p.name for p in killed.glob("*.csv*")} == {"samples.csv.partial", "gc_events.csv.partial",
                                                       "timeline.csv.partial"}


def _has_samples(run: Path) -> bool:
    logs = list(run.glob("trials/*.jsonl"))
    return bool(logs) and sample_rows(logs[0]) >= 3


# --- the memory guard ---------------------------------------------------------------------

def test_the_guard_refuses_a_run_the_machine_cannot_hold_before_writing_anything(tmp_path: Path) -> None:
    done = cli("run", "exp17", "--variant", "weakref", "--param", "size=1e12", "--out", str(tmp_path / "out"),
               cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    line, = done.stderr.splitlines()
    assert line.startswith("harness: error: memory guard: trial weakref iterations=10 size=1000000000000")
    peak = 2 * 4 * 8 * 10**12  # weakref's peak: two graphs of depth + 1 = 4 float64 arrays
    objects = 2 * 4 * OBJECT_BYTES_PER_ARRAY  # the Python objects beside those 8 arrays
    assert f"needs an estimated {human_bytes(peak + objects + INTERPRETER_BYTES)} (numpy peak {human_bytes(peak)} " \
           f"+ {human_bytes(objects)} Python objects + 150.0 MiB interpreter)" in line
    assert "available (20% kept free" in line and "--force" in line
    assert not (tmp_path / "out").exists()


def test_a_forced_run_runs_under_a_memory_limit_and_fails_the_trial_not_the_machine(tmp_path: Path) -> None:
    done = cli("run", "exp17", "--variant", "weakref", "--variant", "no_grad", "--param", "size=1e12",
               "--param", "iterations=1", "--force", "--out", str(tmp_path / "out"), *FAST, cwd=tmp_path)
    assert done.returncode == 1
    run = only_run(tmp_path / "out")
    guard = meta(run)["memory_guard"]
    assert guard["forced"] is True
    assert guard["memory_limit_bytes"] == guard["usable_bytes_per_trial"] + ADDRESS_SPACE_ALLOWANCE
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.status) == ["failed", "failed"]  # both trials ran, both ran out
    assert all(error.startswith("MemoryError: Unable to allocate 7.28 TiB") for error in summary.error)


def test_the_limit_fails_an_allocation_the_machine_could_have_made(tmp_path: Path) -> None:
    """The forced run above would fail without a limit too (no machine has 7 TiB);
    here the array fits in free memory many times over, and only the limit refuses it."""
    array_bytes = 200_000_000 * 8
    assert psutil.virtual_memory().available > 4 * array_bytes
    (tmp_path / "trials").mkdir()
    spec = TrialSpec(trial=0, experiment="exp17", variant="weakref",
                     params={"iterations": 1, "size": 200_000_000, "depth": 1, "gc": "on", "seed": 0,
                             "dtype": "float64"},
                     repeat=0, seed=0, probes=["tracemalloc"], events_path=str(tmp_path / "trials" / "t.jsonl"),
                     measure_overhead=False, memory_limit_bytes=1 * 2**30, parent_pid=os.getpid())
    outcome = execute_trial(spec, timeout_s=60, env={})
    assert outcome.status == "failed"
    assert outcome.error.startswith("MemoryError: Unable to allocate 1.49 GiB")


# --- files on disk ------------------------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A directory this process cannot write to. chmod does not stop root, so as
    root it is a read-only file system (a tmpfs mounted ro), as a user a 0o555 directory."""
    target = tmp_path / "read-only"
    target.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
                                 capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("running as root without permission to mount a read-only file system")
        try:
            yield target
        finally:
            subprocess.run(["umount", "-l", str(target)], check=False)
    else:
        target.chmod(0o555)
        try:
            yield target
        finally:
            target.chmod(0o755)


def test_a_read_only_output_directory_is_refused_in_one_line(read_only_dir: Path, tmp_path: Path) -> None:
    assert not os.access(read_only_dir, os.W_OK)
    done = cli("run", "exp17", "--out", str(read_only_dir), *FAST, cwd=tmp_path)
    assert done.returncode == 2
    line, = done.stderr.splitlines()
    assert line.startswith(f"harness: error: output directory {read_only_dir} cannot be created: ")
    assert line.endswith(("Read-only file system", "Permission denied"))


def test_run_directories_are_never_reused(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "exp17")
    (first / "meta.json").write_text("{}", encoding="utf-8")
    others = [new_run_dir(tmp_path, "exp17") for _ in range(3)]
    assert len({first, *others}) == 4
    assert (first / "meta.json").read_text(encoding="utf-8") == "{}"


def test_a_write_that_fails_half_way_leaves_the_old_file_whole(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "summary.csv"
    write_atomic(target, "a,b\n1,2\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "a,b\n3,4\n5,6\n")
    assert target.read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.csv"]  # no temporary left behind


# --- reading back a damaged run -----------------------------------------------------------

@pytest.fixture
def damaged(earlier_run, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(earlier_run[0], copy)
    return copy


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    line, = done.stderr.splitlines()
    return line


@pytest.mark.parametrize("command", ["check", "show"])
def test_a_csv_cut_mid_line_is_named_as_truncated(damaged: Path, command: str) -> None:
    path = damaged / "summary.csv"
    path.write_bytes(path.read_bytes()[:-20])
    line = _one_error_line(cli(command, str(damaged), cwd=damaged))
    assert line == f"harness: error: {path} is truncated: its last line is incomplete"


def test_a_csv_cut_at_a_line_end_is_caught_by_the_recorded_row_count(damaged: Path) -> None:
    """check reads only what it needs (the summary); the cut samples table is
    named when it is read."""
    path = damaged / "samples.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")
    assert cli("check", str(damaged), cwd=damaged).returncode == 0
    run = harness.load(damaged)
    with pytest.raises(UsageError) as error:
        run.samples  # noqa: B018
    assert str(error.value) == f"{path} is truncated or edited: 2 rows, meta.json records 3"


def test_an_empty_csv_is_named_as_truncated(damaged: Path) -> None:
    (damaged / "gc_events.csv").write_bytes(b"")
    assert cli("show", str(damaged), cwd=damaged).returncode == 0  # show reads the summary only
    with pytest.raises(UsageError, match="gc_events.csv is truncated: the file is empty"):
        harness.load(damaged).gc_events  # noqa: B018


def test_a_truncated_meta_json_is_named_as_corrupt(damaged: Path) -> None:
    path = damaged / "meta.json"
    path.write_bytes(path.read_bytes()[:100])
    for command in ("check", "show"):
        line = _one_error_line(cli(command, str(damaged), cwd=damaged))
        assert line.startswith(f"harness: error: {path} is corrupt: ")


def test_compare_names_the_truncated_file(damaged: Path, earlier_run) -> None:
    path = damaged / "summary.csv"
    path.write_bytes(path.read_bytes()[:-5])
    line = _one_error_line(cli("compare", str(earlier_run[0]), str(damaged), cwd=damaged))
    assert line == f"harness: error: {path} is truncated: its last line is incomplete"


def test_the_python_api_raises_the_same_error(damaged: Path) -> None:
    (damaged / "summary.csv").write_bytes(b"")
    with pytest.raises(UsageError, match="summary.csv is truncated"):
        harness.load(damaged)
