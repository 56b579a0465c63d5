"""Finding experiments: every module of the `experiments` package that
defines `EXPERIMENT` is one, so adding a file adds an experiment."""
from __future__ import annotations

import importlib
import pkgutil

import experiments
from harness.errors import UsageError
from harness.experiment import Experiment


def all_experiments() -> dict[str, Experiment]:
    found: dict[str, Experiment] = {}
    for module_info in sorted(pkgutil.iter_modules(experiments.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"experiments.{module_info.name}")
        experiment = getattr(module, "EXPERIMENT", None)
        if isinstance(experiment, Experiment):
            found[experiment.name] = experiment
    return found


def get_experiment(name: str) -> Experiment:
    found = all_experiments()
    if name not in found:
        raise UsageError(f"unknown experiment {name!r}; choose from: {', '.join(found)}")
    return found[name]
