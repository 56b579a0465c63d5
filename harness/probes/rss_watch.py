"""A watcher of a process's RSS that is not a fork of it.

The trial side (`RssWatcher`) starts this file as a script in a fresh
interpreter, `python -I -S rss_watch.py PID INTERVAL_S` (subprocess: vfork +
exec, so the trial's pages are never shared with it and never copied on
write), and waits for it to say it is ready. The watcher then reads
/proc/PID/statm (one `pread` on a descriptor it keeps open) every
INTERVAL_S on a fixed schedule, keeping (time, RSS bytes) pairs in its own
memory; the times are CLOCK_MONOTONIC, which every process on the machine
shares, so the trial puts them on its own clock. When the trial writes a
byte to its stdin or closes it, the watcher takes one more reading (after
the workload's end), writes every pair to its stdout as native doubles and
exits.

The trial runs no thread and no code for it while the workload runs: it
starts the watcher before and stops it after, so the collector's counts
and the free lists are the workload's alone.

The watcher never outlives the trial: it asks Linux for SIGKILL when the
trial dies (prctl PR_SET_PDEATHSIG), and besides stops when its stdin hits
end of file or when the trial's statm reads empty or zero (a zombie) or
fails (reaped). It ignores SIGINT: a Ctrl-C in a terminal reaches the
trial, which stops it.

The script half imports only os, sys, time, select, signal and array (and
ctypes for prctl): no numpy, no harness package, no site-packages (-S).
Its start-up (about 10-20 ms) is spent before the workload starts.

Linux only (/proc); `available()` says whether it can run here.
"""
from __future__ import annotations

import os
import sys
import time

_STATM = "/proc/{pid}/statm"
_CLOCK = time.CLOCK_MONOTONIC if hasattr(time, "CLOCK_MONOTONIC") else None
_READY = b"r"
_STOP = b"s"
_READY_TIMEOUT_S = 30.0  # a loaded machine may start an interpreter slowly
_STOP_TIMEOUT_S = 30.0


def now() -> float:
    """CLOCK_MONOTONIC: the clock the watcher stamps its readings with."""
    return time.clock_gettime(_CLOCK)


def available() -> bool:
    """Whether a watcher can run here: Linux's /proc and an interpreter to start."""
    return (
        sys.platform.startswith("linux")
        and _CLOCK is not None
        and bool(sys.executable)
        and os.path.exists(_STATM.format(pid=os.getpid()))
    )


class WatcherError(RuntimeError):
    """The watcher could not be started."""


class RssWatcher:
    """A running watcher of this process's RSS; see the module docstring.

    `RssWatcher(interval_s)` returns once the watcher takes readings; then
    `begin()` right before the workload, and `finish()` after it (or
    `kill()` if it raised). All of them run outside the workload."""

    def __init__(self, interval_s: float, wait: bool = True) -> None:
        """Start the watcher; with `wait`, return once it takes readings, else
        `begin()` waits for that (so its start-up can overlap the trial's own)."""
        import subprocess

        self.interval_s = float(interval_s)
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._own_statm = os.open(_STATM.format(pid=os.getpid()), os.O_RDONLY)
        self._t0: float | None = None
        self._ready = False
        self._process: subprocess.Popen | None = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), repr(self.interval_s)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
            )
            if wait:
                self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def wait_ready(self) -> None:
        import select

        if self._ready:
            return
        readable, _, _ = select.select([self._process.stdout], [], [], _READY_TIMEOUT_S)
        ready = os.read(self._process.stdout.fileno(), 1) if readable else b""
        if ready != _READY:
            raise WatcherError(
                "the RSS watcher did not start" if readable
                else f"the RSS watcher was not ready within {_READY_TIMEOUT_S:.0f} s"
            )
        self._ready = True

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def own_rss(self) -> int:
        """This process's RSS in bytes, read as the watcher reads it."""
        return int(os.pread(self._own_statm, 64, 0).split()[1]) * self._page

    def begin(self) -> None:
        """Mark the workload's start: time 0 of the timeline, and its first point."""
        self.wait_ready()
        self._start_rss = self.own_rss()
        self._t0 = now()

    def finish(self) -> list[dict[str, float]]:
        """Stop the watcher (after the workload) and return the timeline:
        (t_s since `begin`, rss_bytes), the first point at 0, the last after the end."""
        if self._t0 is None:
            raise RuntimeError("finish() before begin()")
        t_end = now()
        end_rss = self.own_rss()
        raw = b""
        try:
            try:
                self._process.stdin.write(_STOP)  # a byte, not only EOF: a fork of the trial may hold the pipe too
                self._process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            raw, _ = self._process.communicate(timeout=_STOP_TIMEOUT_S)  # closes stdin, reads to EOF, reaps
        except BaseException as error:
            self.kill()
            import subprocess

            if not isinstance(error, subprocess.TimeoutExpired):
                raise
            import warnings

            warnings.warn(f"the RSS watcher did not stop within {_STOP_TIMEOUT_S:.0f} s; "
                          "its points are lost", RuntimeWarning, stacklevel=2)
        finally:
            self._close_own()
        readings = _decode(raw)
        t0 = self._t0
        points = [{"t_s": 0.0, "rss_bytes": self._start_rss}]
        points += [{"t_s": t - t0, "rss_bytes": rss} for t, rss in readings if t >= t0]
        if points[-1]["t_s"] < t_end - t0:  # the watcher's last reading is missing
            points.append({"t_s": t_end - t0, "rss_bytes": end_rss})
        return points

    def kill(self) -> None:
        """End the watcher at once and reap it (the workload raised, or it misbehaves)."""
        process = self._process
        try:
            if process is not None:
                if process.poll() is None:
                    process.kill()
                process.wait()
        finally:
            if process is not None:
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        try:
                            stream.close()
                        except OSError:
                            pass
            self._close_own()

    def _close_own(self) -> None:
        fd, self._own_statm = self._own_statm, -1
        if fd >= 0:
            os.close(fd)


def _decode(raw: bytes) -> list[tuple[float, int]]:
    import array

    values = array.array("d")
    values.frombytes(raw[: len(raw) // (2 * values.itemsize) * (2 * values.itemsize)])
    return [(values[i], int(values[i + 1])) for i in range(0, len(values), 2)]


# ---------------------------------------------------------------- the watcher


def _die_with_parent(parent: int) -> None:
    """SIGKILL this watcher when the process that started it dies."""
    try:
        import ctypes
        import signal

        prctl = ctypes.CDLL(None, use_errno=True).prctl
        pr_set_pdeathsig = 1
        prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (ImportError, AttributeError, OSError):
        pass  # the statm and EOF checks still end it
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the request was in place


def _watch(pid: int, interval_s: float) -> int:
    import array
    import select
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() == pid:
        _die_with_parent(pid)
    try:
        statm = os.open(_STATM.format(pid=pid), os.O_RDONLY)
    except OSError:
        return 1
    page = os.sysconf("SC_PAGE_SIZE")
    clock, mono = time.clock_gettime, _CLOCK
    points = array.array("d")
    pread, append = os.pread, points.append

    def read() -> bool:
        try:
            fields = pread(statm, 64, 0).split()
        except OSError:  # reaped
            return False
        t = clock(mono)
        if len(fields) < 2 or fields[1] == b"0":  # a zombie has no memory
            return False
        append(t)
        append(int(fields[1]) * page)
        return True

    if not read():
        return 1
    os.write(1, _READY)
    control = [0]
    deadline = clock(mono) + interval_s
    while True:
        wait = deadline - clock(mono)
        if select.select(control, [], [], wait if wait > 0 else 0)[0]:
            read()  # the point after the workload's end
            break
        if not read():
            return 1  # the trial is gone
        deadline += interval_s
        late = clock(mono)
        if deadline < late:
            deadline = late + interval_s  # fell behind: no burst of catch-up readings
    data = memoryview(points.tobytes())
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError:  # the trial is gone
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_watch(int(sys.argv[1]), float(sys.argv[2])))
