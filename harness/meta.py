"""Metadata that travels with every run: what was run, on what, and how.

Collected once in the parent. Trials run in child processes of the same
interpreter, so versions and platform are theirs too; their GC thresholds
are recorded by each trial and checked equal here.
"""
from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The external engines are listed too (None when not installed), so a run
# that compares against them records which release it measured.
PACKAGES = ("numpy", "pandas", "psutil", "memory_profiler", "matplotlib", "tqdm", "dezero-memlab",
            "torch", "dezero")
# Environment variables that change how freed memory reaches the OS (glibc
# malloc tunables, Python's allocator), and so what RSS shows.
ALLOCATOR_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "PYTHONMALLOC", "LD_PRELOAD")


def trial_environment(extra: dict[str, str], code_path: str | None = None) -> dict[str, str]:
    """The environment a trial process starts with: this one's, `extra`, and a
    PYTHONPATH from which it imports this checkout's packages even when it is
    not installed (under another interpreter, from links to them alone:
    harness.interpreters)."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [code_path or str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def allocator_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(ALLOCATOR_ENV_PREFIXES)}


def collect_metadata() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": package_versions(),
        "gc_thresholds": list(gc.get_threshold()),
        "allocator_env": allocator_environment(),
        "git_commit": git_commit(),
    }
