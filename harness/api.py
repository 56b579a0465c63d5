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

from harness.check import CheckResult, ComparisonResult
from harness.experiment import Experiment
from harness.experiment_record import checks_of_run, experiment_of_run
from harness.results import StoredRun, load_run
from harness.runner import DEFAULT_OUT, RunConfig, run_experiment


class Run(StoredRun):
    """A run's directory, metadata and tables (see harness.tables), with its
    checks and figures computed on demand."""

    @property
    def experiment(self) -> str:
        return self.meta["experiment"]

    def checks(self) -> list[CheckResult | ComparisonResult | Any]:
        return checks_of_run(self.path, self.meta, self.summary)

    def _repr_html_(self) -> str:
        """A notebook's view of the run: its status, the summary's main columns,
        each check's verdict and the run's memory plot -- compact, one cell."""
        import base64
        import html

        from harness.cli import SUMMARY_VIEW

        summary = self.summary
        columns = [c for c in SUMMARY_VIEW if c in summary and summary[c].notna().any()]
        checks = self.checks()
        failed = [c for c in checks if not c.passed]
        parts = [f"<div><b>{html.escape(self.experiment)}</b> run {html.escape(str(self.meta.get('run_id')))}: "
                 f"status <b>{html.escape(str(self.meta.get('status')))}</b>, checks {len(checks) - len(failed)} "
                 f"passed, {len(failed)} failed <code>{html.escape(str(self.path))}</code></div>",
                 summary[columns].to_html(index=False, na_rep="-", border=0)]
        if checks:
            items = "".join(f"<li>{html.escape(c.line())}</li>" for c in (failed or checks)[:20])
            more = f"<li>... {len(failed or checks) - 20} more</li>" if len(failed or checks) > 20 else ""
            parts.append(f"<details{' open' if failed else ''}><summary>{'failed checks' if failed else 'checks'}"
                         f"</summary><ul>{items}{more}</ul></details>")
        plot = self.path / "memory.png"
        if plot.is_file():
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<img src="data:image/png;base64,{data}" style="max-width:720px" alt="memory.png">')
        return "\n".join(parts)

    def figures(self) -> dict[str, Figure]:
        from harness.plots import figures, provenance

        return figures(experiment_of_run(self.meta), self.tables, provenance(self.meta))


def run(
    experiment: str | Experiment,
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
    pythons: Sequence[str] = (),
    executor: str = "local",
    scheduler: str | None = None,
    cold_trials: bool = False,
) -> Run:
    """Run an experiment -- a name, a file (`PATH.py`), `module:NAME`, or an
    `harness.Experiment` defined right here (a notebook cell: its trials get it
    pickled) -- and a parameter given a list is swept. `force` runs trials the
    memory guard refuses, each under an address-space limit (see harness.guard).
    `executor="dask"` runs each trial as a task on a Dask cluster: `scheduler`'s
    ("tcp://HOST:PORT"), or a LocalCluster of `jobs` workers (harness.dask_executor).
    `cold_trials` starts each trial as a new interpreter rather than forking
    it from a pre-imported fork server (harness.fork_server).

    Interrupted (Ctrl-C, SIGTERM), the run writes what it measured, marks
    itself interrupted, and the interrupt is raised again, as a notebook
    expects; `harness.load` reads the partial run back."""
    config = RunConfig(
        experiment=experiment, variants=list(variants), params=dict(params or {}), repeats=repeats,
        jobs=jobs, out=Path(out), probes=list(probes), timeout_s=timeout_s,
        measure_overhead=measure_overhead, verify_observer=verify_observer, plots=plots,
        command=f"harness.run({getattr(experiment, 'name', experiment)!r}, ...)",
        trial_env=dict(trial_env) if isinstance(trial_env, Mapping) else (trial_env or {}),
        malloc_trim=malloc_trim, force=force,
        pythons=[pythons] if isinstance(pythons, str) else list(pythons),  # `pythons=["3.11", "3.13"]`
        executor=executor, scheduler=scheduler, cold_trials=cold_trials,
    )
    result = run_experiment(config, show_progress=progress)
    if result.interrupted_by is not None:
        raise KeyboardInterrupt(f"run stopped by signal {result.interrupted_by}; what it measured is in {result.path}")
    return Run(result.path, result.meta, result.tables)


def load(path: Path | str) -> Run:
    stored = load_run(Path(path))
    return Run(stored.path, stored.meta, stored.tables)
