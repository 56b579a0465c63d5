"""A trial forked from the run's fork server measures exactly what a cold
trial (a new interpreter) measures: every exact figure of every sample --
numpy bytes and peaks, the collector's counts and totals, the census -- and
the workload's own records, on workloads whose collections fall mid-run.
And the server is gone when the run is, whatever ended it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

import harness
from harness.runner import RunConfig, forkable
from harness.trial import TrialSpec

EXACT_SAMPLE_COLUMNS = ("iteration", "phase", "numpy_bytes", "numpy_bytes_peak", "live_variables", "live_functions",
                        "cycle_debt_bytes", "gc_count_gen0", "gc_count_gen1", "gc_count_gen2")
EXACT_SUMMARY_COLUMNS = ("numpy_bytes_final", "numpy_bytes_peak", "gc_collections_gen0", "gc_collections_gen1",
                         "gc_collections_gen2", "gc_collected_objects", "gc_uncollectable", "live_variables_final",
                         "live_functions_final", "cycle_debt_final_bytes", "cycle_debt_peak_bytes")

WORKLOADS = [
    # strongref's collections come every ~49 iterations on 3.11 (~130 on 3.13): several fall in the run
    ("exp17", ["strongref", "weakref", "no_grad"], {"iterations": 300}, ["cycle_debt"]),
    ("exp16", ["strongref", "weakref"], {}, []),
    ("exp_mlp", ["strongref", "weakref"], {}, []),
]


def _run(tmp_path: Path, experiment: str, variants: list[str], params: dict, probes: list[str],
         cold: bool) -> harness.Run:
    from harness.probes import DEFAULT_PROBES

    return harness.run(experiment, variants=variants, params=params, probes=[*DEFAULT_PROBES, *probes],
                       plots=False, progress=False, out=tmp_path / ("cold" if cold else "forked"), cold_trials=cold)


@pytest.mark.parametrize("experiment, variants, params, probes", WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_forked_trials_measure_what_cold_trials_measure(tmp_path: Path, experiment: str, variants: list[str],
                                                        params: dict, probes: list[str]) -> None:
    forked = _run(tmp_path, experiment, variants, params, probes, cold=False)
    cold = _run(tmp_path, experiment, variants, params, probes, cold=True)
    assert forked.meta["status"] == cold.meta["status"] == "ok"
    assert (forked.meta["trial_starts"], cold.meta["trial_starts"]) == (["forked"], ["cold"])
    assert set(forked.summary["trial_start"]) == {"forked"} and set(cold.summary["trial_start"]) == {"cold"}

    columns = [c for c in EXACT_SUMMARY_COLUMNS if c in forked.summary]
    pd.testing.assert_frame_equal(forked.summary[["variant", *columns]], cold.summary[["variant", *columns]])
    if experiment == "exp17":  # the collections this comparison is about did happen
        assert forked.summary.set_index("variant").loc["strongref", "gc_collections_gen0"] >= 2
    samples_f, samples_c = forked.samples, cold.samples
    columns = [c for c in EXACT_SAMPLE_COLUMNS if c in samples_f]
    gc_totals = [c for c in samples_f if c.startswith("gc_total")]
    assert len(samples_f) == len(samples_c) > 0
    pd.testing.assert_frame_equal(samples_f[["variant", *columns, *gc_totals]].reset_index(drop=True),
                                  samples_c[["variant", *columns, *gc_totals]].reset_index(drop=True))
    records = [c for c in forked.records if c not in ("trial_start",)]
    pd.testing.assert_frame_equal(forked.records[records], cold.records[records])
    # and the observer's own check holds for forked trials: the probes moved nothing
    assert set(forked.summary["observer_neutral"]) == {True}


def test_what_must_start_cold_does() -> None:
    spec = TrialSpec(trial=0, experiment="exp17", variant="weakref", params={}, repeat=0, seed=0,
                     probes=["tracemalloc"], events_path="/nonexistent")
    assert forkable(spec, RunConfig("exp17"))
    assert not forkable(spec, RunConfig("exp17", cold_trials=True))
    assert not forkable(spec, RunConfig("exp17", trial_env={"MALLOC_MMAP_THRESHOLD_": "65536"}))  # read at exec
    assert not forkable(TrialSpec(**{**spec.__dict__, "probes": ["uss"]}), RunConfig("exp17"))  # shared pages
    assert not forkable(spec, RunConfig("exp17", executor="dask"))


def test_a_trial_with_its_own_environment_starts_cold_and_says_so(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["weakref"], plots=False, progress=False, out=tmp_path,
                      trial_env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert run.meta["trial_starts"] == ["cold"]


def _servers_of(pid: int) -> list[psutil.Process]:
    """The run's fork servers (its forked trials, their children, bear the same command line)."""
    return [p for p in psutil.Process(pid).children() if "harness.fork_server" in " ".join(p.cmdline())]


def test_the_fork_server_serves_run_after_run_and_ends_with_its_process(tmp_path: Path) -> None:
    """One server forks the trials of every run of a process (a notebook, a test
    session); a change to the project's sources starts a new one. Killed
    outright (SIGKILL: nothing is tidied up), a run's server and its running
    trial die with it."""
    from harness import fork_server

    harness.run("exp17", variants=["weakref"], plots=False, progress=False, out=tmp_path / "a")
    first = set(_servers_of(os.getpid()))  # (with any other environment's this session started)
    harness.run("exp17", variants=["no_grad"], plots=False, progress=False, out=tmp_path / "a")
    assert first and set(_servers_of(os.getpid())) == first
    source = Path(fork_server.__file__)
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, time.time_ns()))  # as if edited
        harness.run("exp17", variants=["weakref"], plots=False, progress=False, out=tmp_path / "a")
        now = set(_servers_of(os.getpid()))
        assert len(now - first) == 1 and len(first - now) == 1  # this environment's server, replaced
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", "weakref", "--param", "iterations=1000000",
         "--param", "size=10", "--no-plots", "--quiet", "--out", str(tmp_path / "b")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "b").glob("exp17/*/trials/*.samples")) and time.monotonic() < deadline:
            time.sleep(0.05)
        descendants = psutil.Process(process.pid).children(recursive=True)
        servers = _servers_of(process.pid)
        assert len(servers) == 1 and servers[0].children(), "the trial runs as the server's child"
        process.kill()
        process.wait(timeout=30)
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert not alive, f"outlived their run: {[p.cmdline() for p in alive]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
