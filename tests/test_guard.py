"""The memory guard (harness.guard), called directly with synthetic plans and
needs against a fixed amount of available memory: what runs at once, what a
trial holds beside its arrays, and how far strongref with the GC on can go."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

import harness.guard as guard
from harness.errors import UsageError
from harness.experiment import Params
from harness.guard import (
    ADDRESS_SPACE_ALLOWANCE,
    INTERPRETER_BYTES,
    MARGIN,
    PARENT_BYTES_PER_SAMPLE,
    TrialNeed,
    check_memory,
    strongref_held_graphs,
    trial_needs,
)
from harness.model import chain_bytes
from harness.registry import get_experiment
from harness.runner import RunConfig, guard_memory, make_plan

GiB = 2**30
MACHINE = 23 * GiB  # available memory of the machine the findings came from
PY311 = (700, 10, 10)
PY313 = (2000, 10, 10)


def exp17(**params) -> Params:
    experiment = get_experiment("exp17")
    return Params({**experiment.defaults(), **params})


def need(variant: str, **params) -> TrialNeed:
    (one,) = trial_needs(get_experiment("exp17"), [variant], [exp17(**params)], thresholds=PY311)
    return one


def synthetic(numpy_bytes: int, label: str = "t") -> TrialNeed:
    return TrialNeed(label, {}, numpy_bytes)


# --- 1. what runs at once -------------------------------------------------------------------

def test_repeats_are_trials_that_run_at_once() -> None:  # weakref: 8 arrays at the peak
    """--repeats 4 --jobs 4 of a 15 GiB trial on a 23 GiB machine: four run at once."""
    trials = trial_needs(get_experiment("exp17"), ["weakref"], [exp17(size=15 * GiB // 64)], copies=4)
    assert len(trials) == 4
    with pytest.raises(UsageError, match=r"4 trials run at once \(--jobs 4, 4 trials with repeats\)"):
        check_memory(trials, jobs=4, force=False, available_bytes=MACHINE)
    check_memory(trials[:1], jobs=4, force=False, available_bytes=MACHINE)  # one alone fits


def test_the_runner_gives_the_guard_every_repeat_and_blind_twin(monkeypatch) -> None:
    monkeypatch.setattr(guard.psutil, "virtual_memory", lambda: SimpleNamespace(available=MACHINE))
    config = RunConfig("exp17", variants=["weakref"], params={"size": 15 * GiB // 64}, repeats=4, jobs=4)
    with pytest.raises(UsageError, match="4 trials run at once"):
        guard_memory(make_plan(config))
    twins = RunConfig("exp17", variants=["weakref"], params={"size": 10**6}, repeats=3, jobs=8,
                      verify_observer=True)
    assert guard_memory(make_plan(twins)).trials == 6


def test_the_largest_trials_that_run_at_once_are_counted_together() -> None:
    usable = int(MACHINE * (1 - MARGIN))
    small = synthetic(GiB, "small")
    big = synthetic(usable // 2, "big")  # two of them do not fit, with their interpreters
    check_memory([big, small, small, small], jobs=2, force=False, available_bytes=MACHINE)
    with pytest.raises(UsageError, match="2 trials run at once"):
        check_memory([big, small, big], jobs=2, force=False, available_bytes=MACHINE)
    check_memory([big, small, big], jobs=1, force=False, available_bytes=MACHINE)


def test_a_forced_limit_is_divided_among_the_trials_that_run_at_once() -> None:
    trials = trial_needs(get_experiment("exp17"), ["weakref"], [exp17(size=15 * GiB // 64)], copies=4)
    report = check_memory(trials, jobs=4, force=True, available_bytes=MACHINE)
    usable = int(MACHINE * (1 - MARGIN)) - report.parent_sample_bytes  # less the run's own tables
    assert report.jobs == 4
    assert report.usable_bytes_per_trial == usable // 4
    assert report.memory_limit_bytes == usable // 4 + ADDRESS_SPACE_ALLOWANCE
    # four limits together stay within what is usable (and the allowance each)
    assert 4 * report.memory_limit_bytes <= usable + 4 * ADDRESS_SPACE_ALLOWANCE


# --- 2. what a trial holds beside its arrays ------------------------------------------------

def test_the_python_objects_of_the_graphs_are_counted() -> None:
    """strongref gc=off size=1 iterations=1e6: measured at 2.26 GB RSS, once estimated at 189 MB."""
    trial = need("strongref", gc="off", size=1, iterations=10**6)
    assert trial.numpy_bytes_peak == 10**6 * chain_bytes(1, 3)  # 32 MB of arrays
    assert trial.bytes >= 2.26e9


def test_the_parent_holds_a_bounded_number_of_sample_rows_however_long_the_trials() -> None:
    """The parent streams rows to the tables (harness.table_writer): it holds one
    chunk and about PLOT_ROWS rows per trial, not every row of every trial."""
    from harness.table_writer import CHUNK_ROWS, PLOT_ROWS

    def parent_bytes(iterations: int) -> int:
        trials = trial_needs(get_experiment("exp17"), ["weakref"], [exp17(size=1, iterations=iterations)], copies=3)
        assert [t.samples for t in trials] == [iterations + 3] * 3  # the end of each iteration, and the start
        report = check_memory(trials, jobs=1, force=True, available_bytes=MACHINE, count_parent=True)
        assert report.usable_bytes_per_trial == int(MACHINE * (1 - MARGIN)) - report.parent_sample_bytes
        return report.parent_sample_bytes

    assert parent_bytes(10) == (3 * 13 + CHUNK_ROWS) * PARENT_BYTES_PER_SAMPLE
    long_run = parent_bytes(10**6)
    assert long_run == (3 * PLOT_ROWS + CHUNK_ROWS) * PARENT_BYTES_PER_SAMPLE
    assert parent_bytes(10**8) == long_run  # a hundred times the iterations, the same memory
    # 1e8 iterations of three trials are no longer refused for the parent's sake
    trials = trial_needs(get_experiment("exp17"), ["weakref"], [exp17(size=1, iterations=10**8)], copies=3)
    check_memory(trials, jobs=1, force=False, available_bytes=8 * GiB)
    # little memory at all still refuses a run, the parent's share named
    with pytest.raises(UsageError, match="for the run's own sample tables"):
        check_memory(trials, jobs=1, force=False, available_bytes=200 * 2**20)


def test_exp18_no_grad_counts_its_sample_points_inside_the_loop() -> None:
    (trial,) = trial_needs(get_experiment("exp18_no_grad"), ["no_grad"],
                           [Params({**get_experiment("exp18_no_grad").defaults(), "iterations": 100})])
    assert trial.samples >= 100 * 4 + 1  # x, square 1, square 2, end; the start


# --- 3. strongref with the GC on --------------------------------------------------------------

@pytest.mark.parametrize("iterations", [10_000, 100_000])
def test_strongref_with_the_gc_on_is_bounded_by_the_collector(iterations: int) -> None:
    """Refused at 29.9 GiB and 298 GiB ("every graph held") before; measured peak 295,200,000 B at 1e4."""
    trial = need("strongref", iterations=iterations, size=100_000)
    graph = chain_bytes(100_000, 3)
    assert trial.numpy_bytes_peak == strongref_held_graphs(3, iterations, PY311) * graph < iterations * graph
    assert trial.numpy_bytes_peak >= 2 * 282_400_000  # the measured peak, with room to spare
    check_memory([trial], jobs=1, force=False, available_bytes=MACHINE)


def test_the_gc_on_bound_follows_the_thresholds_and_never_exceeds_every_graph() -> None:
    assert strongref_held_graphs(3, 10**9, PY313) > strongref_held_graphs(3, 10**9, PY311)
    assert strongref_held_graphs(9, 10**9, PY311) < strongref_held_graphs(1, 10**9, PY311)
    assert strongref_held_graphs(3, 50, PY311) == 50
    # the measured 458 graphs of 300,000 iterations (before the first full collection)
    assert strongref_held_graphs(3, 300_000, PY311) >= 2 * 458


def test_strongref_with_the_gc_off_is_still_every_graph() -> None:
    trial = need("strongref", gc="off", iterations=10_000, size=100_000)
    assert trial.numpy_bytes_peak == 10_000 * chain_bytes(100_000, 3)
    with pytest.raises(UsageError, match="memory guard: trial strongref"):
        check_memory([trial], jobs=1, force=False, available_bytes=MACHINE)


def test_the_cli_refuses_repeats_that_do_not_fit_together(tmp_path: Path) -> None:
    """The refusal is one line and exit 2, before anything is written."""
    usable = psutil.virtual_memory().available * (1 - MARGIN)
    # weakref's peak is 8 arrays: each trial needs about 0.3 of what is usable, four 1.2
    size = int((0.3 * usable - INTERPRETER_BYTES) / 8 / 8)
    done = subprocess.run([sys.executable, "-m", "harness", "run", "exp17", "--variant", "weakref",
                           "--param", f"size={size}", "--param", "iterations=2", "--repeats", "4", "--jobs", "4",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert "memory guard" in line and "4 trials run at once (--jobs 4, 4 trials with repeats)" in line
    assert not (tmp_path / "out").exists()
