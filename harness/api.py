"""The Python API, for notebooks and scripts.

    import harness
    run = harness.run("exp17", params={"iterations": 20, "gc": "off"})
    run.summary            # pandas DataFrame, one row per trial
    run.samples, run.gc_events, run.timeline, run.records   # read from disk when first used
    run.checks()           # the experiment's expectations, judged
    run.figures()          # {"memory": Figure, "summary": Figure, ...}
    run.path               # the run directory written under results/

`harness.load(path)` reads a finished run back the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from harness.check import CheckResult, ComparisonResult, check_summary
from harness.registry import get_experiment
from harness.results import StoredRun, load_run, stored_observer_results
from harness.runner import DEFAULT_OUT, RunConfig, run_experiment


class Run(StoredRun):
    """A run's directory, metadata and tables (see harness.tables), with its
    checks and figures computed on demand."""

    @property
    def experiment(self) -> str:
        return self.meta["experiment"]

    def checks(self) -> list[CheckResult | ComparisonResult | Any]:
        return stored_observer_results(self.path) + check_summary(get_experiment(self.experiment), self.summary)

    def figures(self) -> dict[str, Figure]:
        from harness.plots import figures, provenance

        return figures(get_experiment(self.experiment), self.tables, provenance(self.meta))


def run(
    experiment: str,
    variants: Sequence[str] = (),
    params: dict[str, Any] | None = None,
    repeats: int = 1,
    jobs: int = 1,
    out: Path | str = DEFAULT_OUT,
    probes: Sequence[str] = (),
    timeout_s: float | None = None,
    measure_overhead: bool = False,
    verify_observer: bool = False,
    plots: bool = True,
    progress: bool = True,
    trial_env: dict[str, str] | None = None,
    malloc_trim: bool = False,
    force: bool = False,
) -> Run:
    """Run an experiment; a parameter given a list is swept. `force` runs trials the
    memory guard refuses, each under an address-space limit (see harness.guard).

    Interrupted (Ctrl-C, SIGTERM), the run writes what it measured, marks
    itself interrupted, and the interrupt is raised again, as a notebook
    expects; `harness.load` reads the partial run back."""
    config = RunConfig(
        experiment=experiment, variants=list(variants), params=dict(params or {}), repeats=repeats,
        jobs=jobs, out=Path(out), probes=list(probes), timeout_s=timeout_s,
        measure_overhead=measure_overhead, verify_observer=verify_observer, plots=plots,
        command=f"harness.run({experiment!r}, ...)",
        trial_env=dict(trial_env) if isinstance(trial_env, Mapping) else (trial_env or {}),
        malloc_trim=malloc_trim, force=force,
    )
    result = run_experiment(config, show_progress=progress)
    if result.interrupted_by is not None:
        raise KeyboardInterrupt(f"run stopped by signal {result.interrupted_by}; what it measured is in {result.path}")
    return Run(result.path, result.meta, result.tables)


def load(path: Path | str) -> Run:
    stored = load_run(Path(path))
    return Run(stored.path, stored.meta, stored.tables)
