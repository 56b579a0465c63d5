"""What a run keeps of its experiment's definition, so that the run stays data.

An experiment may come from a user's file, module, installed package or
notebook cell (harness.registry). Reading its run later -- `show`, `check`,
`compare`, the report, `harness.load` -- must not import that code again, so
at run time the run directory records:

- `meta.json` `experiment_source` (where it came from) and
  `experiment_definition` (its title, claim and parameters: what tables,
  plots and the report need to lay the run out);
- `checks.csv`: every check as judged at the end of the run; `check` re-judges
  a built-in experiment with the installed definition and reads these
  verdicts for any other;
- `definition/`: how to rerun it -- the defining file's source
  (`experiment.py`), for a notebook's experiment its cloudpickle
  (`experiment.pickle`) and its functions' source where Python kept it, and
  `RERUN.md` saying how. The harness itself never loads them.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness.experiment import Experiment, Expected, Param

CHECKS_FILE = "checks.csv"
CHECK_COLUMNS = ("passed", "trial", "variant", "metric", "measured", "expected", "line")
DEFINITION_DIR = "definition"


def describe(experiment: Experiment) -> dict[str, Any]:
    """The parts of a definition a reader of the run needs, as data."""
    return {
        "title": experiment.title,
        "claim": experiment.claim,
        "seed_step": experiment.seed_step,
        "variants": list(experiment.variants),
        "params": [{"name": p.name, "type": p.type.__name__, "default": p.default, "help": p.help,
                    "choices": list(p.choices) if p.choices else None} for p in experiment.params],
    }


def checks_table(checks: Sequence[Any]) -> pd.DataFrame:
    rows = [{"passed": bool(c.passed), "trial": c.trial, "variant": c.variant,
             "metric": getattr(getattr(c, "expectation", None), "metric", getattr(c, "figure", None)),
             "measured": _text(c.measured), "expected": _text(getattr(c, "expected", getattr(c, "reference", None))),
             "line": c.line()} for c in checks]
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class RecordedCheck:
    """A check as judged at run time, read back from checks.csv."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.passed = str(row["passed"]) == "True"
        self.trial, self.variant = row["trial"], row["variant"]
        self.measured, self.expected = row["measured"], row["expected"]
        self._line = str(row["line"])

    def line(self) -> str:
        return self._line


def recorded_checks(run_dir: Path) -> list[RecordedCheck]:
    from harness.errors import UsageError

    path = Path(run_dir) / CHECKS_FILE
    if not path.is_file():
        raise UsageError(f"{path}: missing; the run's checks were not recorded (it did not finish), "
                         "and its experiment is not built in, so they cannot be judged again without "
                         "importing its definition")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != list(CHECK_COLUMNS):
        raise UsageError(f"{path}: not a checks table (columns {', '.join(table.columns)})")
    return [RecordedCheck(row) for row in table.to_dict("records")]


def stand_in(meta: dict[str, Any]) -> Experiment:
    """An Experiment built from what the run recorded, for laying out its tables
    and plots without importing the definition: it judges nothing."""
    described = meta.get("experiment_definition") or {}
    types = {"int": int, "float": float, "str": str}
    params = tuple(Param(p["name"], types.get(p.get("type"), str), p.get("default"), p.get("help", ""),
                         tuple(p["choices"]) if p.get("choices") else None)
                   for p in described.get("params", []))
    if not params:  # a run made before definitions were recorded: its parameters' names at least
        params = tuple(Param(name, str, None, "") for name in meta.get("params", {}))
    return Experiment(
        name=str(meta.get("experiment")), title=str(described.get("title", "")),
        seed_step=str(described.get("seed_step", "")), claim=str(described.get("claim", "")),
        workload=_not_runnable, variants=tuple(described.get("variants", meta.get("variants", ()))),
        params=params, expected=lambda variant, p: Expected(None, None), expectations=lambda variant, p: [],
    )


def _not_runnable(bench: Any) -> None:
    raise RuntimeError("a recorded experiment describes a run; it has no workload to run")


def is_built_in(meta: dict[str, Any]) -> bool:
    """Runs made before sources were recorded were all of built-in experiments."""
    return (meta.get("experiment_source") or {}).get("kind", "built-in") == "built-in"


def record_definition(run_dir: Path, experiment: Experiment, source: Any, command: str) -> None:
    """definition/: the source that defines the experiment, and how to rerun it."""
    from harness.results import write_atomic

    if source.kind == "built-in":
        return  # the installed package has it; meta.json records its version and commit
    folder = Path(run_dir) / DEFINITION_DIR
    folder.mkdir()
    if source.path and Path(source.path).is_file():
        write_atomic(folder / "experiment.py", Path(source.path).read_text(encoding="utf-8", errors="replace"))
        how = (f"Its definition was read from `{source.path}`; `experiment.py` here is a copy of that file as "
               f"it was.\n\nRerun it with the same command:\n\n    {command}\n\nor from the copy:\n\n"
               f"    harness run {folder / 'experiment.py'}\n")
    else:
        import cloudpickle

        write_atomic(folder / "experiment.pickle", cloudpickle.dumps(experiment))
        functions = "\n\n".join(_source(f) for f in (experiment.workload, experiment.expected,
                                                       experiment.expectations))
        write_atomic(folder / "experiment_functions.py", functions)
        how = ("It was defined in a notebook or script, not in a file; `experiment.pickle` is the "
               "definition pickled by value (cloudpickle), `experiment_functions.py` its functions' source "
               "where Python kept it. Loading a pickle runs code: do it only for a run you trust.\n\n"
               "    import pickle, harness\n"
               f"    experiment = pickle.load(open({str(folder / 'experiment.pickle')!r}, 'rb'))\n"
               "    harness.run(experiment)\n")
    write_atomic(folder / "RERUN.md", f"# Rerunning {experiment.name} ({source.kind})\n\n{how}")


def _source(function: Any) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return f"# {getattr(function, '__qualname__', function)!s}: no source kept by Python"


def experiment_of_run(meta: dict[str, Any]) -> Experiment:
    """The definition a reader lays a run out by: the installed one for a
    built-in experiment, else the stand-in made from what the run recorded."""
    if is_built_in(meta):
        from harness.interpreters import INTERPRETER_PARAM, with_interpreters
        from harness.registry import get_experiment

        experiment = get_experiment(str(meta["experiment"]))
        if INTERPRETER_PARAM in (meta.get("params") or {}):  # a run with --python
            experiment = with_interpreters(experiment, [])
        return experiment
    return stand_in(meta)


def checks_of_run(run_dir: Path, meta: dict[str, Any], summary: pd.DataFrame) -> list[Any]:
    """A run's checks: a built-in experiment's judged again by the installed
    definition (so a corrected model applies); any other's as recorded."""
    if not is_built_in(meta):
        return list(recorded_checks(run_dir))
    from harness.check import check_summary
    from harness.results import stored_observer_results

    return stored_observer_results(run_dir) + check_summary(experiment_of_run(meta), summary)
