"""A user's own engine as a variant: `file:path/to/engine.py` or `module:package.module`.

The file or module must define the DeZero names a workload uses: `Variable`
(a class whose constructor takes an ndarray) and the ops the chosen
experiment calls (`square` for most; a run that needs an op the engine lacks
is refused at plan time), `Config` for settings given in brackets
(`file:step18.py[no_grad]`, `[enable_backprop=False]`). That is what a
notebook's step 16-22 cells define, so those cells saved as a `.py` file
work as they are: top-level code runs once on import, as it does in the
notebook. An engine without those names brings its own `EngineAPI`
(`ENGINE = ...` or `def engine(): ...`: see engine.interface.ProvidedEngine).
A file is imported under its own name (`step16`), so a helper beside it that
imports it by name gets the same module.

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
import json
import re
import subprocess
import sys
import traceback
from pathlib import Path
from types import ModuleType

from engine.isolated import run_isolated

FILE_PREFIX = "file:"
MODULE_PREFIX = "module:"
REQUIRED_NAMES = ("Variable",)  # and the ops a chosen experiment uses: checked at plan time
# `file:step18.py[no_grad]`, `module:pkg.engine[enable_backprop=False]`: Config settings in force in its trials.
_SETTINGS = re.compile(r"^(?P<base>.*)\[(?P<settings>[^\[\]]*)\]$")
SETTING_SHORTHANDS = {"no_grad": {"enable_backprop": False}}

_loaded: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plugin engine that cannot be used; the message is one line saying why,
    `detail` the import's traceback where there was one (shown with --debug)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def is_plugin(name: str) -> bool:
    return name.startswith((FILE_PREFIX, MODULE_PREFIX))


def split_settings(name: str) -> tuple[str, dict[str, object]]:
    """`file:x.py[no_grad]` -> (`file:x.py`, {"enable_backprop": False}); without brackets, no settings."""
    match = _SETTINGS.match(name)
    if match is None:
        return name, {}
    settings: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in match["settings"].split(","))):
        if item in SETTING_SHORTHANDS:
            settings.update(SETTING_SHORTHANDS[item])
            continue
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise PluginError(f"variant {name!r}: a setting is NAME=VALUE (a Config attribute) or no_grad; "
                              f"got {item!r}")
        settings[key.strip()] = _setting_value(text.strip())
    return match["base"], settings


def _setting_value(text: str) -> object:
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def load_plugin(name: str) -> ModuleType:
    """Import the engine `name` (`file:...` or `module:...`, settings aside) once per process and check it."""
    base, settings = split_settings(name)
    if base not in _loaded:
        if base.startswith(FILE_PREFIX):
            module = _import_file(base, base[len(FILE_PREFIX):])
        else:
            module = _import_module(base, base[len(MODULE_PREFIX):])
        _check_names(base, module)
        _loaded[base] = module
    module = _loaded[base]
    config = getattr(module, "Config", None)
    for key in settings:
        if config is None or not hasattr(config, key):
            raise PluginError(f"variant {name!r}: the engine has no Config.{key} to set"
                              + ("" if config is not None else " (it defines no Config)"))
    return module


def provided_engine(module: ModuleType) -> object | None:
    """The engine a plugin provides itself (`ENGINE = ...` or `def engine(): ...`), if it does."""
    if hasattr(module, "ENGINE"):
        return module.ENGINE
    factory = getattr(module, "engine", None)
    if callable(factory) and not isinstance(factory, ModuleType):
        return factory()
    return None


def ops_of(module: ModuleType) -> list[str]:
    """The ops a plugin offers, by its DeZero names or its own engine's (any public callable)."""
    from engine.interface import offered_ops

    return sorted(offered_ops(provided_engine(module) or module))


def check_in_child(name: str, timeout_s: float = 120) -> dict[str, object]:
    """Import and check the plugin in a process of its own, so what its
    top-level code does (exit, fork, start processes, hang) cannot happen to
    the caller; raise PluginError with the child's one line if it fails, else
    return what it found (`ops`: the ops the engine offers). The
    child runs as `engine.isolated.run_isolated` runs it."""
    try:
        child = run_isolated([sys.executable, "-m", "engine.adapters.plugin", name], timeout_s)
    except subprocess.TimeoutExpired:
        raise PluginError(f"variant {name!r}: importing it did not finish in {timeout_s:g} s") from None
    lines = [line for line in child.stdout.splitlines() if line.strip()]
    said = child.stderr.strip()
    if child.returncode == 0 and lines and lines[-1].startswith(_CHECKED):
        return json.loads(lines[-1][len(_CHECKED):])
    said, _, detail = said.partition(_TRACEBACK)
    said = said.strip()
    reason = next((line for line in reversed(lines) if line.startswith("variant ")), None)
    if reason is None:
        last = said.splitlines()[-1] if said else ""
        raise PluginError(f"variant {name!r}: importing it ended the process (exit status {child.returncode})"
                          + (f": {last}" if last else ""), said)
    if said:  # what the engine itself wrote to stderr while it was imported, on the same line
        reason += f"; it wrote to stderr: {' | '.join(said.splitlines())[-300:]}"
    raise PluginError(reason, detail.strip())


_CHECKED = "plugin checked"
_TRACEBACK = "--- the import's traceback ---"


def _main(name: str) -> int:
    try:
        module = load_plugin(name)
        found = {"ops": ops_of(module), "provides_engine": provided_engine(module) is not None,
                 "has_function": hasattr(module, "Function")}
    except PluginError as error:
        print(error, flush=True)
        if error.detail:
            print(_TRACEBACK + "\n" + error.detail, file=sys.stderr, flush=True)
        return 2
    print(_CHECKED + " " + json.dumps(found), flush=True)
    return 0


def _import_file(name: str, text: str) -> ModuleType:
    if not text.strip():
        raise PluginError(f"variant {name!r}: give a path after 'file:', e.g. file:my_engine.py")
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"variant {name!r}: no such file: {path}")
    if path.suffix != ".py":
        raise PluginError(f"variant {name!r}: {path.name} is not a Python file (.py)")
    # Its own name, as `python path/to/step16.py`'s helpers would import it
    # (`import step16` then finds this module, not a second copy); a name
    # already taken by another module gets one made unique by the path.
    module_name = path.stem
    taken = sys.modules.get(module_name)
    if not module_name.isidentifier() or (taken is not None and getattr(taken, "__file__", None) != str(path)):
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
        raise PluginError(f"variant {name!r}: importing {path.name} failed: {_where(error, path)}",
                          traceback.format_exc()) from None
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
        raise PluginError(f"variant {name!r}: importing {module_name} failed: {_where(error)}",
                          traceback.format_exc()) from None
    except (Exception, SystemExit) as error:
        raise PluginError(f"variant {name!r}: importing {module_name} failed: {_where(error)}",
                          traceback.format_exc()) from None


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
    if hasattr(module, "ENGINE") or callable(getattr(module, "engine", None)):
        return  # it provides its own engine: its names are its own
    missing = [n for n in REQUIRED_NAMES if not hasattr(module, n)]
    if missing:
        raise PluginError(
            f"variant {name!r}: the engine does not define {', '.join(missing)} "
            f"(it needs the DeZero names {', '.join(REQUIRED_NAMES)}, square, ..., or an ENGINE of its own)"
        )
    if not isinstance(module.Variable, type):
        raise PluginError(f"variant {name!r}: Variable is a {type(module.Variable).__name__}, not a class")


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
