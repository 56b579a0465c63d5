"""The `sampled` probe: an RSS timeline over the workload, polled from a
watcher process that is not a fork of the trial, that never outlives the
workload (returned, raised or killed), and that leaves the trial's
collector alone while the workload runs."""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.probes import rss_watch
from harness.probes.sampled import run_sampled

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S = 0.005
MB = 1_000_000

pytestmark = pytest.mark.skipif(not rss_watch.available(), reason="the RSS watcher needs Linux's /proc")


def _new_children(before: set[int]) -> list[psutil.Process]:
    return [child for child in psutil.Process().children() if child.pid not in before]


def _gone(pid: int) -> bool:
    """Exited: reaped, or a zombie waiting for a parent that is not this test."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_timeline_catches_a_short_lived_peak_on_the_workloads_clock() -> None:
    """200 MB touched, held ~50 ms and freed inside the workload: the timeline
    sees it, at the times the workload's own clock says it was there; the
    first point is at the workload's start, the last after its end."""
    marks: dict[str, float] = {}

    def workload() -> str:
        marks["start"] = rss_watch.now()
        time.sleep(0.03)
        marks["allocating"] = rss_watch.now()
        big = np.empty(200 * MB // 8)
        big.fill(1.0)  # every page touched: resident
        time.sleep(0.05)
        del big
        marks["freed"] = rss_watch.now()
        time.sleep(0.03)
        marks["end"] = rss_watch.now()
        return "returned"

    points, returned = run_sampled(workload, INTERVAL_S)
    assert returned == "returned"
    t = [p["t_s"] for p in points]
    rss = [p["rss_bytes"] for p in points]
    assert t[0] == 0.0 and t == sorted(t)
    assert t[-1] >= marks["end"] - marks["start"]  # a point after the workload's end
    base = rss[0]
    high = [p["t_s"] for p in points if p["rss_bytes"] - base >= 150 * MB]
    assert high, f"no point saw the 200 MB peak: {max(rss) - base:,} bytes above the start at most"
    # On the workload's clock: never before the array existed, never after it was
    # freed (a reading is stamped right after it is taken: a little slack for that).
    assert min(high) >= marks["allocating"] - marks["start"]
    assert max(high) <= marks["freed"] - marks["start"] + 0.01
    assert rss[-1] - base < 150 * MB  # freed by the end
    # ~5 ms apart over the whole workload
    gaps = np.diff(t)
    assert len(points) >= 0.5 * (marks["end"] - marks["start"]) / INTERVAL_S
    assert np.median(gaps) < 3 * INTERVAL_S


def test_the_watcher_is_a_fresh_small_interpreter_not_a_fork_of_the_trial() -> None:
    """A fork would share (and make the trial copy) the trial's pages: its
    command line would be the trial's and it would map numpy's libraries."""
    before = {child.pid for child in psutil.Process().children()}
    seen: list[tuple[int, list[str], str]] = []

    def workload() -> None:
        for child in _new_children(before):
            seen.append((child.pid, child.cmdline(), Path(f"/proc/{child.pid}/maps").read_text()))

    run_sampled(workload, INTERVAL_S)
    assert len(seen) == 1, seen
    pid, cmdline, maps = seen[0]
    assert cmdline != psutil.Process().cmdline()
    assert any(part.endswith("rss_watch.py") for part in cmdline), cmdline
    assert "numpy" not in maps and "_multiarray" not in maps  # nothing of the trial's heap or libraries
    assert _gone(pid)


@pytest.mark.parametrize("outcome", ["returns", "ValueError", "KeyboardInterrupt", "SystemExit"])
def test_no_watcher_is_left_when_the_workload_returns_or_raises(outcome: str) -> None:
    before = {child.pid for child in psutil.Process().children()}
    watchers: list[int] = []

    def workload() -> str:
        watchers.extend(child.pid for child in _new_children(before))
        if outcome != "returns":
            raise {"ValueError": ValueError, "KeyboardInterrupt": KeyboardInterrupt,
                   "SystemExit": SystemExit}[outcome]("from the workload")
        return "ok"

    if outcome == "returns":
        assert run_sampled(workload, INTERVAL_S)[1] == "ok"
    else:
        with pytest.raises(BaseException) as raised:
            run_sampled(workload, INTERVAL_S)
        assert type(raised.value).__name__ == outcome
    assert watchers, "no watcher was running during the workload"
    assert _new_children(before) == []  # exited and reaped: not even a zombie
    assert all(not psutil.pid_exists(pid) or _gone(pid) for pid in watchers)


def test_the_trial_runs_nothing_for_the_probe_while_the_workload_runs() -> None:
    """No thread added to the trial, and gen-0's count (GC-tracked allocations)
    does not move while the workload sleeps and the watcher polls."""
    readings: dict[str, object] = {}
    threads_before = set(threading.enumerate())  # a pytest-xdist worker has threads of its own

    def workload() -> None:
        enabled = gc.isenabled()
        gc.disable()
        try:
            before = gc.get_count()[0]
            time.sleep(0.1)  # ~20 readings by the watcher
            readings["count_moved_by"] = gc.get_count()[0] - before
            readings["new_threads"] = [t.name for t in set(threading.enumerate()) - threads_before]
        finally:
            if enabled:
                gc.enable()

    points, _ = run_sampled(workload, INTERVAL_S)
    assert len(points) >= 10
    assert readings == {"count_moved_by": 0, "new_threads": []}


TRIAL = textwrap.dedent('''
    import json, os, sys, time
    import psutil
    from harness.probes.sampled import run_sampled

    def workload():
        if sys.argv[1] == "fork":  # a child of the trial's that holds the watcher's pipes too
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        children = [{"pid": c.pid, "cmdline": c.cmdline()} for c in psutil.Process().children()]
        print(json.dumps(children), flush=True)
        time.sleep(60)

    run_sampled(workload, 0.005)
''')


@pytest.mark.parametrize("forks", ["alone", "fork"])
def test_the_watcher_dies_with_a_sigkilled_trial(forks: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trial = subprocess.Popen([sys.executable, "-c", TRIAL, forks], stdout=subprocess.PIPE, text=True, env=env,
                             cwd=ROOT)
    others: list[int] = []
    try:
        children = json.loads(trial.stdout.readline())
        watchers = [c["pid"] for c in children if any(p.endswith("rss_watch.py") for p in c["cmdline"])]
        others = [c["pid"] for c in children if c["pid"] not in watchers]
        assert len(watchers) == 1, children
        assert not _gone(watchers[0])
        trial.send_signal(signal.SIGKILL)
        trial.wait()
        deadline = time.monotonic() + 5
        while not _gone(watchers[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _gone(watchers[0]), "the watcher outlived the trial"
    finally:
        if trial.poll() is None:
            trial.kill()
            trial.wait()
        trial.stdout.close()
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_off_linux_memory_profiler_still_gives_the_timeline(monkeypatch) -> None:
    """The fallback (no /proc): memory_profiler's fork, the probe's first design."""
    monkeypatch.setattr(rss_watch, "available", lambda: False)

    def workload() -> int:
        time.sleep(0.03)
        return 7

    points, returned = run_sampled(workload, INTERVAL_S)
    assert returned == 7
    assert points[0]["t_s"] == 0.0 and len(points) >= 3
    assert all(p["rss_bytes"] > 0 for p in points)
