"""`sampled` probe: memory_profiler's RSS timeline over the whole workload.

`memory_usage` polls the process from a helper process every `interval`
seconds, so it sees peaks that fall between two iterations' samples, at the
resolution of the interval. `max_iterations=1`: the workload runs once
(memory_usage would otherwise rerun a short function with a finer interval).
"""
from __future__ import annotations

import multiprocessing
from typing import Any, Callable

from memory_profiler import memory_usage

MIB = 1024 * 1024


def run_sampled(workload: Callable[[], Any], interval_s: float) -> tuple[list[dict[str, float]], Any]:
    """Run `workload` under memory_usage; return the timeline (t_s, rss_bytes) and its result."""
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
