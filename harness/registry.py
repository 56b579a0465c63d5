"""Finding experiments, wherever they are defined.

- Built in: every module of the `experiments` package that defines
  `EXPERIMENT` is one (`experiments/exp17.py` defines `exp17`), so adding a
  file adds an experiment.
- A file: `harness run path/to/my_experiment.py` (or `file:PATH.py`).
- A module: `module:pkg.my_experiment`.
- An installed package: an entry point in the group
  `dezero_memlab.experiments`, naming a module that defines `EXPERIMENT` or
  the `Experiment` itself; listed by `harness list` under its name.
- A notebook cell: `harness.run(harness.Experiment(...))` registers it in
  the run's process; its trials get it pickled by value (cloudpickle).

Each is found by a reference (`exp17`, `file:/abs/my_experiment.py`,
`module:pkg.mod`, an entry point's name, a notebook's experiment name) that a
trial resolves again in its own process, importing just that one
definition: whatever other experiments import never enters the measured
process. A definition that cannot be used -- no file, an import error, no
`EXPERIMENT`, a parameter whose default its own spec refuses, a workload that
is not callable -- is one line naming the file and what is wrong.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import experiments
from harness.errors import UsageError
from harness.experiment import Experiment, Param

ENTRY_POINT_GROUP = "dezero_memlab.experiments"
FILE_PREFIX, MODULE_PREFIX = "file:", "module:"
BUILT_IN, FILE, MODULE, ENTRY_POINT, NOTEBOOK = "built-in", "file", "module", "entry point", "notebook"

# Experiments a notebook or script defined in this process (harness.run(Experiment(...))).
_DEFINED_HERE: dict[str, Experiment] = {}


@dataclass(frozen=True)
class Source:
    """Where an experiment was found: `ref` finds it again in a trial's process."""

    kind: str
    ref: str
    path: str | None = None  # the file that defines it, when there is one


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_"))


def _load(module_name: str) -> Experiment | None:
    module = importlib.import_module(f"experiments.{module_name}")
    experiment = getattr(module, "EXPERIMENT", None)
    return experiment if isinstance(experiment, Experiment) else None


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def all_experiments() -> dict[str, Experiment]:
    """The built-in experiments, those installed packages register, and those defined in this process."""
    found: dict[str, Experiment] = {}
    for module_name in _module_names():
        experiment = _load(module_name)
        if experiment is not None:
            found[experiment.name] = experiment
    for name in _entry_points():
        if name not in found:
            found[name] = get_experiment(name)
    found.update({n: e for n, e in _DEFINED_HERE.items() if n not in found})
    return found


def get_experiment(ref: str) -> Experiment:
    return find(ref)[0]


def find(ref: str | Experiment) -> tuple[Experiment, Source]:
    """The experiment a reference names, and where it came from."""
    if isinstance(ref, Experiment):
        return define_here(ref)
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError(f"an experiment is a name, a file (PATH.py) or module:NAME; got {ref!r}")
    if ref.startswith(FILE_PREFIX) or ref.endswith(".py"):
        path = Path(ref[len(FILE_PREFIX):] if ref.startswith(FILE_PREFIX) else ref).expanduser().resolve()
        return _from_module(_import_file(path), str(path)), Source(FILE, f"{FILE_PREFIX}{path}", str(path))
    if ref.startswith(MODULE_PREFIX):
        name = ref[len(MODULE_PREFIX):]
        module = _import_module(name)
        return _from_module(module, name), Source(MODULE, ref, getattr(module, "__file__", None))
    if ref in _module_names():
        experiment = _load(ref)
        if experiment is not None and experiment.name == ref:
            return experiment, Source(BUILT_IN, ref)
    if ref in _DEFINED_HERE:
        return _DEFINED_HERE[ref], Source(NOTEBOOK, ref)
    points = _entry_points()
    if ref in points:
        return _from_entry_point(ref, points[ref])
    builtin = {e.name: e for e in map(_load, _module_names()) if e is not None}
    if ref in builtin:
        return builtin[ref], Source(BUILT_IN, ref)
    choices = [*builtin, *points, *_DEFINED_HERE]
    raise UsageError(f"unknown experiment {ref!r}; choose from: {', '.join(choices)}, "
                     "or a file (PATH.py) or module:NAME that defines EXPERIMENT")


def define_here(experiment: Experiment) -> tuple[Experiment, Source]:
    """An experiment defined in this process (a notebook cell): checked, and kept
    under its name so its trials, which get it pickled, find it again."""
    validate(experiment, f"experiment {getattr(experiment, 'name', '?')!r}")
    builtin = set(_module_names()) | set(_entry_points())
    if experiment.name in builtin:
        raise UsageError(f"experiment {experiment.name!r}: the name is taken by an installed experiment; "
                         "choose another name")
    _DEFINED_HERE[experiment.name] = experiment
    return experiment, Source(NOTEBOOK, experiment.name)


def pickled(name: str) -> str:
    """An experiment defined in this process, pickled by value (cloudpickle: its
    workload may be a notebook cell's function) for a trial's fresh process."""
    import cloudpickle

    return base64.b64encode(cloudpickle.dumps(_DEFINED_HERE[name])).decode("ascii")


def define_pickled(text: str) -> Experiment:
    """In a trial: the experiment the run's process defined (see `pickled`)."""
    import pickle

    experiment = pickle.loads(base64.b64decode(text))  # from the run's own process, over the trial's stdin
    _DEFINED_HERE[experiment.name] = experiment
    return experiment


def _from_entry_point(name: str, point: Any) -> tuple[Experiment, Source]:
    where = f"entry point {name!r} ({point.value})"
    try:
        loaded = point.load()
    except Exception as error:  # the installed package's own fault: one line
        raise UsageError(f"{where}: loading it failed: {type(error).__name__}: {error}",
                         traceback.format_exc()) from None
    experiment = loaded if isinstance(loaded, Experiment) else _from_module(loaded, where)
    if experiment.name != name:
        raise UsageError(f"{where}: it defines an experiment named {experiment.name!r}; "
                         f"register it under that name")
    module = sys.modules.get(point.value.split(":")[0])
    return experiment, Source(ENTRY_POINT, name, getattr(module, "__file__", None))


def _from_module(module: ModuleType | Any, where: str) -> Experiment:
    experiment = getattr(module, "EXPERIMENT", None)
    if experiment is None:
        raise UsageError(f"{where} defines no EXPERIMENT (an harness.Experiment(...) at its top level)")
    validate(experiment, where)
    return experiment


def validate(experiment: Any, where: str) -> None:
    """Refuse a definition the runner could not use, with one line saying why."""
    if not isinstance(experiment, Experiment):
        raise UsageError(f"{where}: EXPERIMENT is a {type(experiment).__name__}, not an harness.Experiment")
    if not isinstance(experiment.name, str) or not experiment.name.isidentifier():
        raise UsageError(f"{where}: the experiment's name must be an identifier (letters, digits, _), "
                         f"got {experiment.name!r}")
    for what in ("workload", "expected", "expectations"):
        if not callable(getattr(experiment, what)):
            raise UsageError(f"{where}: {what} must be a function, got {type(getattr(experiment, what)).__name__}")
    if not experiment.variants or isinstance(experiment.variants, str):
        raise UsageError(f"{where}: variants must be a tuple of variant names, got {experiment.variants!r}")
    names = []
    for param in experiment.params:
        if not isinstance(param, Param):
            raise UsageError(f"{where}: params must be harness.Param(...) entries, got {param!r}")
        if param.type not in (int, float, str):
            raise UsageError(f"{where}: parameter {param.name!r} has type {param.type!r}; use int, float or str")
        try:
            param.validate(param.default)
        except UsageError as error:
            raise UsageError(f"{where}: the default of parameter {param.name!r} is refused by its own spec: "
                             f"{error}") from None
        names.append(param.name)
    if len(set(names)) != len(names):
        raise UsageError(f"{where}: a parameter is named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    for name in experiment.sweep:
        if name not in names:
            raise UsageError(f"{where}: sweep names {name!r}, which is not one of its parameters ({', '.join(names)})")


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"experiment file {path}: no such file")
    if path.suffix != ".py":
        raise UsageError(f"experiment file {path}: not a Python file (.py)")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"memlab_experiment_{path.stem}_{digest}" if path.stem.isidentifier() else f"memlab_experiment_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and cloudpickle look the module up by name
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as `python my_experiment.py` would: helpers beside it import
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:
        sys.modules.pop(module_name, None)
        raise UsageError(f"experiment file {path}: importing it failed: {_where(error, path)}",
                         traceback.format_exc()) from None
    return module


def _import_module(name: str) -> ModuleType:
    if not name:
        raise UsageError("give a module after 'module:', e.g. module:mypkg.my_experiment")
    try:
        return importlib.import_module(name)
    except (Exception, SystemExit) as error:
        raise UsageError(f"experiment module {name!r}: importing it failed: {type(error).__name__}: {error}",
                         traceback.format_exc()) from None


def _where(error: BaseException, path: Path) -> str:
    """The error, and the line of the user's file it came from."""
    line = next((frame.lineno for frame in reversed(traceback.extract_tb(error.__traceback__))
                 if frame.filename == str(path)), None)
    if isinstance(error, SyntaxError) and error.lineno:
        line = error.lineno
    return f"{type(error).__name__}: {error}" + (f" ({path.name}, line {line})" if line else "")
