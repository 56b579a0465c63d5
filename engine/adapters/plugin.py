"""A user's own engine as a variant: `file:path/to/engine.py` or `module:package.module`.

The file or module must define the DeZero names a workload uses: at least
`Variable` (a class whose constructor takes an ndarray) and `square`; the
other ops (`exp`, `add`, `mul`, `sub`, `neg`) when a workload calls them,
`Config` with `enable_backprop` for settings. That is what a notebook's step
16-22 cells define, so those cells saved as a `.py` file work as they are:
top-level code runs once on import, as it does in the notebook.

A file is imported as a script would run: its directory first on `sys.path`,
so it can import modules next to it. Whatever goes wrong -- no such file,
not Python, an exception while importing, a missing name -- is a
`PluginError` with one line saying what, so it can be reported before any
trial starts.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import io
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from types import ModuleType

FILE_PREFIX = "file:"
MODULE_PREFIX = "module:"
REQUIRED_NAMES = ("Variable", "square")

_loaded: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plugin engine that cannot be used; the message is one line saying why."""


def is_plugin(name: str) -> bool:
    return name.startswith((FILE_PREFIX, MODULE_PREFIX))


def load_plugin(name: str) -> ModuleType:
    """Import the engine `name` (`file:...` or `module:...`) once per process and check it."""
    if name not in _loaded:
        if name.startswith(FILE_PREFIX):
            module = _import_file(name, name[len(FILE_PREFIX):])
        else:
            module = _import_module(name, name[len(MODULE_PREFIX):])
        _check_names(name, module)
        _loaded[name] = module
    return _loaded[name]


def check_in_child(name: str, timeout_s: float = 120) -> None:
    """Import and check the plugin in a process of its own, so what its
    top-level code does (exit, fork, start processes, hang) cannot happen to
    the caller; raise PluginError with the child's one line if it fails. The
    child's whole session is killed when it is done. Its output goes to
    files, not pipes: a process the plugin starts would hold a pipe open."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "engine.adapters.plugin", name], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise PluginError(f"variant {name!r}: importing it did not finish in {timeout_s:g} s") from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.strip()]
        said = err.read().strip()
    if child.returncode == 0 and lines and lines[-1] == _CHECKED:
        return
    reason = next((line for line in reversed(lines) if line.startswith("variant ")), None)
    if reason is None:
        last = said.splitlines()[-1] if said else ""
        reason = (f"variant {name!r}: importing it ended the process (exit status {child.returncode})"
                  + (f": {last}" if last else ""))
    raise PluginError(reason)


_CHECKED = "plugin checked"


def _main(name: str) -> int:
    try:
        load_plugin(name)
    except PluginError as error:
        print(error, flush=True)
        return 2
    print(_CHECKED, flush=True)
    return 0


def _import_file(name: str, text: str) -> ModuleType:
    if not text.strip():
        raise PluginError(f"variant {name!r}: give a path after 'file:', e.g. file:my_engine.py")
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"variant {name!r}: no such file: {path}")
    if path.suffix != ".py":
        raise PluginError(f"variant {name!r}: {path.name} is not a Python file (.py)")
    # A module name per path, so two files named alike do not replace each other.
    module_name = f"memlab_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        with _quiet():
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        sys.modules.pop(module_name, None)
        raise PluginError(f"variant {name!r}: importing {path.name} failed: {_where(error, path)}") from None
    return module


def _import_module(name: str, module_name: str) -> ModuleType:
    if not module_name.strip():
        raise PluginError(f"variant {name!r}: give a module after 'module:', e.g. module:mypkg.engine")
    try:
        with _quiet():
            return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise PluginError(f"variant {name!r}: no module named {error.name!r} on sys.path") from None
        raise PluginError(f"variant {name!r}: importing {module_name} failed: {_where(error)}") from None
    except (Exception, SystemExit) as error:
        raise PluginError(f"variant {name!r}: importing {module_name} failed: {_where(error)}") from None


@contextlib.contextmanager
def _quiet():
    """What the engine's top-level code prints (a notebook's cells print) stays out of the harness's output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _where(error: BaseException, path: Path | None = None) -> str:
    """`Type: message (file, line N)`, the innermost frame in the user's code, on one line."""
    message = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} (line {error.lineno})"
    frames = traceback.extract_tb(error.__traceback__)
    if path is not None:
        frames = [f for f in frames if Path(f.filename) == path] or frames
    if frames:
        return f"{message} ({Path(frames[-1].filename).name}, line {frames[-1].lineno})"
    return message


def _check_names(name: str, module: ModuleType) -> None:
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        raise PluginError(
            f"variant {name!r}: the engine does not define {', '.join(missing)} "
            f"(it needs the DeZero names {', '.join(REQUIRED_NAMES)}, ...)"
        )
    if not isinstance(module.Variable, type):
        raise PluginError(f"variant {name!r}: Variable is a {type(module.Variable).__name__}, not a class")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
