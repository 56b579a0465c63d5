"""Trials under other Python interpreters (`harness run EXP --python 3.11 --python 3.13`).

The seeds' central claim -- strongref graphs wait for a collector that counts
objects, not bytes -- depends on the interpreter: gen-0's threshold is 700
on 3.11 and 3.12 and 2000 on 3.13, and 3.12 moved collections to the eval
breaker. So one plan can run under several interpreters, each trial in a
fresh process of the interpreter it names.

An interpreter is found by version (`3.13`: `python3.13` on PATH, else
pyenv's copy) or by path, and asked what it is. A trial needs numpy, psutil,
memory_profiler and cloudpickle (and the official DeZero for its variants):
the harness's own interpreter has them; for any other one an environment is
made once with uv (the fast, well-kept installer, a dependency of this
package), with the same versions of those packages as the run's own
process where the interpreter has them (the newest below them where not;
what was installed is recorded in meta.json), and cached
under ~/.cache/dezero-memlab/envs, keyed by the interpreter and the
requirements. A file written after the install marks it ready, so a failed
or interrupted install is rebuilt, never used. The harness's own code is not installed there: the trial imports it
from a directory of links to this process's `engine`, `harness` and
`experiments` packages, so the environment stays valid when the checkout
moves or changes.

PyTorch is not prepared for other interpreters: on this project's platform
its wheels for them are multi-gigabyte CUDA builds. Its variants run on the
harness's own interpreter only; asked otherwise, the plan is refused.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from harness.errors import UsageError

if TYPE_CHECKING:
    from harness.experiment import Experiment, Param

# What a trial imports, pinned to the versions of the run's own process.
TRIAL_PACKAGES = ("numpy", "psutil", "memory_profiler", "cloudpickle")
# Variants whose engine is an extra a trial must have: (variant prefix, requirement).
VARIANT_EXTRAS = (("dezero_official", "dezero==0.0.13"),)
OWN_ONLY_VARIANTS = ("torch",)  # prefixes: variants run on the harness's own interpreter only
PROBE = ("import gc, json, platform, sys; print(json.dumps({'version': platform.python_version(), "
         "'implementation': sys.implementation.name, 'executable': sys.executable, "
         "'prefix': sys.prefix, 'gc_thresholds': gc.get_threshold()}))")
INSTALL_TIMEOUT_S = 900
READY = "dezero-memlab-ready.json"  # written last: an environment without it is rebuilt


@dataclass(frozen=True)
class Interpreter:
    requested: str  # as the user wrote it: "3.13" or a path
    path: str  # the executable that was asked
    version: str  # "3.13.0"
    implementation: str  # "cpython"
    gc_thresholds: tuple[int, ...]

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def is_own(self) -> bool:
        """The interpreter this harness runs on (same executable, or same
        environment): it has every package a trial needs."""
        return _same_file(self.path, sys.executable)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def own() -> Interpreter:
    import gc
    import platform

    return Interpreter(platform.python_version(), sys.executable, platform.python_version(),
                       sys.implementation.name, tuple(gc.get_threshold()))


def _candidates(requested: str) -> list[str]:
    if os.sep in requested or requested.startswith("."):
        return [requested]
    if not re.fullmatch(r"\d+\.\d+", requested):
        raise UsageError(f"--python takes a version such as 3.13 or a path to an interpreter, got {requested!r}")
    if ".".join(map(str, sys.version_info[:2])) == requested:
        return [sys.executable]
    found = [shutil.which(f"python{requested}") or ""]
    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found += sorted(str(p) for p in Path(root).glob(f"versions/{requested}.*/bin/python{requested}"))
    return [f for f in found if f]


def find(requested: str, timeout_s: float = 30) -> Interpreter:
    """The interpreter `requested` names (a version, or a path), asked what it is; one line if none answers."""
    for path in _candidates(requested):
        try:
            # pyenv's shims answer only for the versions its configuration selects: one that fails is skipped.
            done = subprocess.run([path, "-I", "-c", PROBE], capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode != 0:
            continue
        try:
            said = json.loads(done.stdout)
        except ValueError:
            continue
        version = said["version"]
        if re.fullmatch(r"\d+\.\d+", requested) and not version.startswith(requested + "."):
            continue
        if said["implementation"] != "cpython":
            raise UsageError(f"--python {requested}: {path} is {said['implementation']}, not CPython "
                             "(the probes read CPython's collector)")
        if tuple(map(int, version.split(".")[:2])) < (3, 11):
            raise UsageError(f"--python {requested}: Python {version} is too old; trials need 3.11 or newer")
        return Interpreter(requested, path, version, "cpython", tuple(said["gc_thresholds"]))
    if os.sep in requested or requested.startswith("."):
        raise UsageError(f"--python {requested}: no Python interpreter runs there")
    raise UsageError(f"--python {requested}: no Python {requested} on this machine "
                     f"(looked for python{requested} on PATH and in pyenv's versions)")


def requirements(variants: Iterable[str]) -> list[str]:
    """What a trial of these variants imports: at the run's own versions where
    the interpreter has them, else the newest below them (numpy 2.5 has no 3.11
    wheels: a 3.13 run's 3.11 trials get 2.4). What was installed is recorded
    (`packages`), since an exact figure may differ between numpy versions."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = []
    for package in TRIAL_PACKAGES:
        try:
            pinned.append(f"{package}<={version(package)}")
        except PackageNotFoundError:
            pinned.append(package)
    for prefix, requirement in VARIANT_EXTRAS:
        if any(v.startswith(prefix) for v in variants):
            pinned.append(requirement)
    return sorted(set(pinned))


def refuse_own_only(interpreters: list[Interpreter], variants: Iterable[str]) -> None:
    for variant in variants:
        if variant.startswith(OWN_ONLY_VARIANTS) and any(not i.is_own for i in interpreters):
            other = next(i for i in interpreters if not i.is_own)
            raise UsageError(f"variant {variant!r} runs only on the harness's own interpreter "
                             f"(Python {own().version}), not on {other.version}: PyTorch is not installed "
                             "in other interpreters' environments (their wheels are multi-GB CUDA builds)")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dezero-memlab" / "envs"


def _uv() -> str:
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
        raise UsageError("--python needs uv to prepare the interpreter's environment: pip install uv") from None


def environment(interpreter: Interpreter, needs: list[str], say: Callable[[str], None] = lambda line: None,
                root: Path | None = None) -> str:
    """The executable trials of `interpreter` run with: its own when it is the
    harness's, else that of a cached environment with `needs` installed."""
    if interpreter.is_own:
        return interpreter.path
    root = root or cache_dir()
    key = hashlib.sha256(json.dumps([os.path.realpath(interpreter.path), interpreter.version, needs])
                         .encode()).hexdigest()[:16]
    env = root / f"cpython-{interpreter.version}-{key}"
    python, ready = env / "bin" / "python", env / READY
    if ready.is_file():
        return str(python)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{env.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same one
        if ready.is_file():
            return str(python)
        say(f"preparing Python {interpreter.version}'s environment with uv: {' '.join(needs)} "
            f"(once; cached in {env})")
        shutil.rmtree(env, ignore_errors=True)  # what an interrupted build left
        uv = _uv()
        try:
            for command in ([uv, "venv", "--quiet", "--python", interpreter.path, str(env)],
                            # compiled now: a trial's (or its fork server's) imports then read .pyc files
                            # even where the environment forbids writing them (PYTHONDONTWRITEBYTECODE)
                            [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(python),
                             *needs]):
                done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
                if done.returncode != 0:
                    lines = [line for line in done.stderr.splitlines() if line.strip()]
                    raise UsageError(f"--python {interpreter.requested}: preparing its environment failed: "
                                     f"{lines[-1].strip() if lines else f'uv exited with {done.returncode}'}")
        except subprocess.TimeoutExpired:
            shutil.rmtree(env, ignore_errors=True)
            raise UsageError(f"--python {interpreter.requested}: preparing its environment took over "
                             f"{INSTALL_TIMEOUT_S} s") from None
        except BaseException:
            shutil.rmtree(env, ignore_errors=True)
            raise
        ready.write_text(json.dumps({"interpreter": interpreter.path, "version": interpreter.version,
                                     "requirements": needs}) + "\n")
    return str(python)


def packages(python: str) -> dict[str, str]:
    """The versions of what a trial imports, as installed for `python`."""
    script = ("import json, importlib.metadata as m\n"
              f"names = {list(TRIAL_PACKAGES)!r}\n"
              "found = {}\n"
              "for name in names:\n"
              "    try:\n"
              "        found[name] = m.version(name)\n"
              "    except m.PackageNotFoundError:\n"
              "        pass\n"
              "print(json.dumps(found))\n")
    done = subprocess.run([python, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def project_path(root: Path) -> str:
    """A directory holding only links to this process's own packages: the
    trial's PYTHONPATH under another interpreter (the checkout root would do,
    but an installed copy sits in a site-packages built for this one)."""
    import engine
    import experiments
    import harness

    root.mkdir(parents=True, exist_ok=True)
    for package in (engine, harness, experiments):
        source = Path(package.__file__).resolve().parent
        link = root / source.name
        if link.is_symlink() and link.resolve() != source:  # the checkout moved since
            link.unlink()
        with contextlib.suppress(FileExistsError):  # another run made it a moment ago
            link.symlink_to(source, target_is_directory=True)
    return str(root)


# With --python the interpreter is a parameter of the plan like any swept
# one: a column of every table ("3.13"), a facet of the plots, part of how
# checks pair trials and how compare matches them.
INTERPRETER_PARAM = "interpreter"


def interpreter_param(default: str) -> "Param":
    from harness.experiment import Param

    return Param(INTERPRETER_PARAM, str, default, "the Python minor version the trial ran under (--python)")


def with_interpreters(experiment: "Experiment", minors: list[str]) -> "Experiment":
    """`experiment` with the interpreter as its last parameter."""
    from dataclasses import replace

    if any(p.name == INTERPRETER_PARAM for p in experiment.params):
        raise UsageError(f"experiment {experiment.name!r} has a parameter named {INTERPRETER_PARAM!r} of its "
                         "own; --python cannot add it")
    return replace(experiment, params=(*experiment.params, interpreter_param(minors[0] if minors else "")))
