"""Finding experiments: every module of the `experiments` package that
defines `EXPERIMENT` is one, so adding a file adds an experiment.

An experiment lives in the module of its own name (`experiments/exp17.py`
defines `exp17`), so a trial imports just the one it runs: whatever the
other experiments import never enters the measured process.
"""
from __future__ import annotations

import importlib
import pkgutil

import experiments
from harness.errors import UsageError
from harness.experiment import Experiment


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__) if not m.name.startswith("_"))


def _load(module_name: str) -> Experiment | None:
    module = importlib.import_module(f"experiments.{module_name}")
    experiment = getattr(module, "EXPERIMENT", None)
    return experiment if isinstance(experiment, Experiment) else None


def all_experiments() -> dict[str, Experiment]:
    found: dict[str, Experiment] = {}
    for module_name in _module_names():
        experiment = _load(module_name)
        if experiment is not None:
            found[experiment.name] = experiment
    return found


def get_experiment(name: str) -> Experiment:
    if name in _module_names():
        experiment = _load(name)
        if experiment is not None and experiment.name == name:
            return experiment
    found = all_experiments()
    if name not in found:
        raise UsageError(f"unknown experiment {name!r}; choose from: {', '.join(found)}")
    return found[name]
