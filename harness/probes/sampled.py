"""`sampled` probe: an RSS timeline over the whole workload, polled from
another process every `interval` seconds, so it sees peaks that fall
between two of the harness's sample points, at the resolution of the
interval.

On Linux the poller is `harness.probes.rss_watch`: a fresh interpreter
started with subprocess (vfork + exec), not a fork of the trial, that reads
/proc/PID/statm on a fixed schedule and hands its readings back when the
workload is over. The trial starts it before the workload and stops it
after; while the workload runs the trial executes nothing for it (no
thread, no signal handler), so the collector's counts stay the workload's.
The timeline is on the trial's clock: t_s is seconds since the workload's
start (the first point, at 0, is read by the trial itself then), and the
last point is read after the workload returned.

Elsewhere (no /proc) it falls back to memory_profiler's `memory_usage((f,
(), {}), interval, timestamps=True, max_iterations=1, retval=True)`, the
probe's original design, which costs the workload more: its helper
(multiprocessing's MemTimer) is a *fork* of the trial that stays alive for
the whole workload, so every page the trial writes meanwhile -- its heap,
its arrays, the interpreter's own structures -- is first copied
(copy-on-write faults). At exp17's default size (1e4, a workload of about
1.4 ms) that alone made the workload 1.09-1.17x slower, whether the fork
polled or sat idle; the polling itself cost little. Its timestamps are
also wall-clock, from a baseline read before the fork, not from the
workload's start. memory_profiler stays a dependency for that fallback.
"""
from __future__ import annotations

import multiprocessing
import warnings
from typing import Any, Callable

from harness.probes import rss_watch

MIB = 1024 * 1024


def start_watcher(interval_s: float) -> rss_watch.RssWatcher | None:
    """A watcher started now, not yet waited for, so that its start-up overlaps
    the trial's own (None where there is none: run_sampled falls back)."""
    if not rss_watch.available():
        return None
    try:
        return rss_watch.RssWatcher(interval_s, wait=False)
    except (OSError, rss_watch.WatcherError) as error:
        warnings.warn(f"{error}; the sampled probe falls back to memory_profiler", RuntimeWarning, stacklevel=2)
        return None


def run_sampled(workload: Callable[[], Any], interval_s: float,
                watcher: rss_watch.RssWatcher | None = None) -> tuple[list[dict[str, float]], Any]:
    """Run `workload` with its RSS polled every `interval_s` (by `watcher` if one
    was started, see start_watcher); return the timeline (a list of {"t_s",
    "rss_bytes"}, from the workload's start to after its end) and the workload's
    result. If the workload raises (anything, KeyboardInterrupt and SystemExit
    too), the poller is stopped before the exception goes on."""
    if watcher is None:
        watcher = start_watcher(interval_s)
    if watcher is not None:
        try:
            watcher.wait_ready()
        except (OSError, rss_watch.WatcherError) as error:
            watcher.kill()
            watcher = None
            warnings.warn(f"{error}; the sampled probe falls back to memory_profiler", RuntimeWarning, stacklevel=2)
    if watcher is not None:
        return _run_watched(watcher, workload)
    return _run_memory_profiler(workload, interval_s)


def _run_watched(watcher: rss_watch.RssWatcher, workload: Callable[[], Any]) -> tuple[list[dict[str, float]], Any]:
    try:
        watcher.begin()
        returned = workload()
    except BaseException:
        watcher.kill()
        raise
    return watcher.finish(), returned


def _run_memory_profiler(workload: Callable[[], Any], interval_s: float) -> tuple[list[dict[str, float]], Any]:
    """The fallback: memory_profiler's memory_usage (see the module docstring for its cost)."""
    from memory_profiler import memory_usage

    try:
        timeline, returned = memory_usage(
            (workload, (), {}), interval=interval_s, timestamps=True, max_iterations=1, retval=True
        )
    except BaseException:
        # memory_usage stops its sampling process only when the function
        # raises an Exception; after SystemExit or KeyboardInterrupt it would
        # keep polling, and the trial would wait for it at exit for ever.
        for helper in multiprocessing.active_children():
            helper.terminate()
            helper.join(timeout=5)
        raise
    start = timeline[0][1] if timeline else 0.0
    points = [{"t_s": ts - start, "rss_bytes": int(mem * MIB)} for mem, ts in timeline]
    return points, returned
