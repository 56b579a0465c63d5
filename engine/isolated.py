"""A Python child that nothing it does can reach the caller through: it runs
in a session of its own, its output goes to files (a process it starts would
hold a pipe open), and its whole session is killed when it is done or out of
time. Used to check a plugin (`engine.adapters.plugin`) and to explain an
engine (`harness.explain`), both of which import code the user wrote."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def project_env() -> dict[str, str]:
    """This environment, with this checkout importable even when it is not installed."""
    return {**os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}


def run_isolated(command: list[str], timeout_s: float, stdin_text: str = "") -> Finished:
    """Run `command` to its end; raise subprocess.TimeoutExpired (its session
    killed) if it takes longer than `timeout_s`."""
    with tempfile.TemporaryFile("w+") as given, tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err:
        given.write(stdin_text)
        given.seek(0)
        child = subprocess.Popen(command, stdin=given, stdout=out, stderr=err, env=project_env(),
                                 start_new_session=True)
        try:
            child.wait(timeout=timeout_s)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        out.seek(0)
        err.seek(0)
        return Finished(child.returncode, out.read(), err.read())
