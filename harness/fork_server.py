"""Trials forked from one pre-imported interpreter: the fork server.

A cold trial (`python -m harness.trial`) spends most of its time starting
an interpreter and importing numpy, the engine and the probes -- more than
exp17's three workloads take together. So trials fork from a server process
per interpreter (`python -m harness.fork_server`; `--python` runs have one
for each) that imports `harness.trial` and the registry once and
then forks a child per trial; the child is then a trial exactly as a cold
one is from `main()` on: it reads its spec on stdin, writes its log to the
trial's .log, runs in a process group of its own and dies with the run.

What a trial measures does not depend on how it started: the workload
begins after `gc.collect()` (which also empties the free lists) and
`gc.freeze()` in the trial itself, so the collector's counts, the numpy
bytes and the census start from the same state either way --
tests/test_fork_server.py compares every exact figure of cold and forked
trials. Where a fork would differ, the run starts trials cold: another
environment that must be in place when the process starts (`trial_env`:
glibc reads MALLOC_* once), the `uss` probe
(a forked child shares the server's pages, so fewer are its own), and
`cold_trials=True` (`--cold-trials`).

A server lives as long as the process that started it (harness.run in a
notebook reuses it run after run) unless the project's own sources change.

The protocol, per trial: the run sends the server one byte over its control
socket with two descriptors (SCM_RIGHTS): a socket of the trial's own and
the trial's log file. The server forks; the child takes the trial socket as
its stdin, reads the spec the run writes there, and runs. The server writes
"<pid>\\n" on the trial socket at once and "<returncode>\\n" when it has
reaped the child (negative: the signal that killed it, as subprocess says).
The server ends when the process that started it closes the control socket,
exits or dies.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

# How long a trial may wait for the server to fork it (the server's own
# imports come first); past this the trial starts cold.
START_TIMEOUT_S = 60.0


class ForkedTrial:
    """A running forked trial, as the runner uses a `subprocess.Popen`:
    `pid` (the leader of its process group), `poll()`, `wait(timeout)` and
    `communicate(timeout=...)`."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._received = b""
        self.returncode: int | None = None
        # A TimeoutError or a ConnectionError (OSErrors): the runner starts the trial cold.
        line = self._line(START_TIMEOUT_S)
        if not line:
            raise ConnectionError("the fork server ended before starting the trial")
        self.pid = int(line)

    def _line(self, timeout: float | None) -> bytes:
        """The server's next line, b"" at the end of the channel."""
        self._channel.settimeout(timeout)
        while b"\n" not in self._received:
            data = self._channel.recv(64)
            if not data:
                return b""
            self._received += data
        line, self._received = self._received.split(b"\n", 1)
        return line

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        try:
            line = self._line(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired("forked trial", timeout) from None
        # No status: the server died, and its children with it (PR_SET_PDEATHSIG).
        self.returncode = int(line) if line else -signal.SIGKILL
        self._channel.close()
        return self.returncode

    def communicate(self, _input: None = None, timeout: float | None = None) -> None:
        """As Popen's: wait for the end (the spec went to the trial when it was started)."""
        self.wait(timeout)


class ForkServer:
    """The side of the process that runs experiments: start the server, fork trials from it, stop it."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python, self.env = python, env
        self.code_stamp = 0
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # The server's own output (an import error, say) goes where the run's
        # stderr goes; a trial's goes to its .log.
        self.process = subprocess.Popen(
            [python, "-m", "harness.fork_server", str(os.getpid()), str(theirs.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, pass_fds=[theirs.fileno()],
            process_group=0,  # as a trial: a terminal's Ctrl-C goes to the run, which decides
        )
        theirs.close()
        self._lock = threading.Lock()  # one request on the control socket at a time

    def start(self, spec: Any, log_fd: int) -> ForkedTrial:
        """Fork a trial for `spec`; raises OSError if the server is gone (the
        runner then starts the trial cold)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self._control, [b"T"], [theirs.fileno(), log_fd])
        finally:
            theirs.close()
        ours.sendall(json.dumps(asdict(spec)).encode())
        ours.shutdown(socket.SHUT_WR)  # the child reads its spec to the end, as from a pipe
        return ForkedTrial(ours)

    def close(self) -> None:
        self._control.close()  # the server sees the end and exits
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# This process's servers, by interpreter and environment: a notebook or a test
# session that runs many experiments forks all their trials from one server
# per interpreter, as long as it lives and the code it imported is unchanged.
_servers: dict[tuple[str, tuple[tuple[str, str], ...]], ForkServer] = {}
_servers_lock = threading.Lock()
_CODE = Path(__file__).resolve().parent.parent  # the project's packages, which the server imports


def _code_stamp() -> int:
    """The newest modification time of the project's engine and harness sources:
    a server that imported older code than this is not used again."""
    newest = 0
    for package in ("engine", "harness", "harness/probes", "engine/adapters"):
        with contextlib.suppress(OSError):
            for entry in os.scandir(_CODE / package):
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
    return newest


def server_for(python: str, env: dict[str, str]) -> ForkServer:
    """This process's fork server for `python` and `env`, started on first use
    (`harness run` asks for it first thing, so its imports overlap the run's own)."""
    key = (python, tuple(sorted(env.items())))
    stamp = _code_stamp()
    with _servers_lock:
        server = _servers.get(key)
        if server is not None and server.process.poll() is None and server.code_stamp == stamp:
            return server
        if server is not None:
            server.close()
        server = _servers[key] = ForkServer(python, env)
        server.code_stamp = stamp
        return server


# -- the server -------------------------------------------------------------

def _serve(run_pid: int, control: socket.socket) -> None:
    # What every trial imports, once: the trial's own modules, and the
    # registry that finds its experiment (each experiment's module is still
    # imported by the trial that runs it, and only that one).
    from harness import registry, trial  # noqa: F401

    trial.die_with_parent(run_pid)
    channels: dict[int, socket.socket] = {}  # child pid -> its trial socket

    def reap(signum: int = 0, frame: Any = None) -> None:
        while channels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            channel = channels.pop(pid, None)
            if channel is not None:
                try:
                    channel.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass  # the run stopped waiting for it
                channel.close()

    signal.signal(signal.SIGCHLD, reap)
    server_pid = os.getpid()
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(control, 1, 2)
        except ConnectionResetError:
            return
        if len(fds) != 2:  # the run closed the socket: done
            return
        channel_fd, log_fd = fds
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # a fast child is reaped after it is known
        pid = os.fork()
        if pid == 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            _child(server_pid, control, channels, channel_fd, log_fd, trial)
        channel = socket.socket(fileno=channel_fd)
        os.close(log_fd)
        channels[pid] = channel
        try:
            channel.sendall(f"{pid}\n".encode())
        except OSError:
            pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
        reap()


def _child(server_pid: int, control: socket.socket, channels: dict[int, socket.socket],
           channel_fd: int, log_fd: int, trial: Any) -> None:
    """The forked trial: the process a cold `python -m harness.trial` would be, from main() on."""
    code = 1
    try:
        os.setpgid(0, 0)  # a group of its own, as `process_group=0` gives a cold trial
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the server's reaper is not the trial's
        control.close()
        for other in channels.values():
            other.close()
        os.dup2(channel_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(channel_fd)
        os.close(log_fd)
        code = trial.main(expected_parent=server_pid)
    except BaseException:  # noqa: BLE001 - reported in the trial's log, like a cold trial's traceback
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def main() -> None:
    run_pid, control_fd = int(sys.argv[1]), int(sys.argv[2])
    _serve(run_pid, socket.socket(fileno=control_fd))
    # Served: no trial is left and nothing is buffered. The interpreter's own
    # teardown would only keep the run waiting for this process to end.
    os._exit(0)


if __name__ == "__main__":
    main()
