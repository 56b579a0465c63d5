"""Committed baselines: each experiment's summary at CI-sized parameters.

`experiments/baselines/python3.X/<experiment>/` holds the `summary.csv` and
`meta.json` of one run, made on Python 3.X (the collector's thresholds and
rules differ between minor versions, so each has its own; the interpreter
running `check` picks its own), with the parameters and probes in `CI_SIZES`: small enough
for CI (seconds), GC off so every numpy-domain byte and GC count is exact,
no sampled probe and no overhead measurement (they cost time and judge
nothing exact). They are refreshed only on purpose, after a change that is
meant to change memory behaviour:

    python -m harness.baselines refresh [EXPERIMENT ...]   # rewrite them
    python -m harness.baselines check   [EXPERIMENT ...]   # fresh run vs baseline, as CI does
    python -m harness.baselines list                        # what is covered

A run whose trials failed, or whose expectations (`harness check`) fail, is
refused as a baseline: a baseline must describe an engine that works.

`check` exits like `harness compare` (0 pass, 1 regression, 2 not
comparable or nothing compared), and also 2 when a trial of the baseline or
of the fresh run was not compared (a variant renamed, added or removed, a
baseline trial that failed): the baseline must describe exactly what the CI
size runs. Every error, a file in the way of `refresh` included, is one
line and exit 2.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import experiments
from harness.tolerance import TOLERANCE_HELP
from harness.errors import UsageError
from harness.results import write_atomic, write_json

# Package data of `experiments`, so a plain `pip install .` has them too.
BASELINES_ROOT = Path(experiments.__file__).resolve().parent / "baselines"
PYTHON_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
BASELINES_DIR = BASELINES_ROOT / f"python{PYTHON_MINOR}"  # this interpreter's
CI_PROBES = ("tracemalloc", "rss", "gc", "census")


@dataclass(frozen=True)
class CiSize:
    """The parameters an experiment's baseline is made with (the rest keep their defaults)."""

    params: dict[str, Any]
    probes: tuple[str, ...] = CI_PROBES
    variants: tuple[str, ...] = ()  # the experiment's own when empty
    trial_env: dict[str, str] = field(default_factory=dict)


CI_SIZES: dict[str, CiSize] = {
    # 20 graphs of 4 x 80,000 bytes: strongref ends at 6.4 MB, weakref at 320 kB.
    "exp17": CiSize({"gc": "off", "iterations": 20}),
    # Five graphs of 4 x 8,000 bytes, one census collection (the GC is off by definition).
    "exp16": CiSize({"iterations": 5, "size": 1000}),
    # Below 256 KiB, so numpy's temporary elision does not apply: the models' small-array case.
    "exp18_retain_grad": CiSize({"gc": "off", "iterations": 2, "size": 1000}),
    # x = np.ones((20, 20, 20)): 64,000-byte arrays.
    "exp18_no_grad": CiSize({"gc": "off", "side": 20}),
    # Two epochs of ten mini-batches: one step's graph and grads, exact with the GC off.
    "exp_mlp": CiSize({"gc": "off", "epochs": 2}),
    # exp17_sweep has no CI size: its claims are about where the GC's
    # collections fall (GC on), which `check` judges in its own tests; a
    # baseline would compare only what exp17's already does.
}


def covered() -> tuple[list[str], list[str]]:
    """(experiments with a CI size, registered experiments without one)."""
    from harness.registry import all_experiments

    names = list(all_experiments())
    return [n for n in names if n in CI_SIZES], [n for n in names if n not in CI_SIZES]


def _chosen(names: Sequence[str]) -> list[str]:
    with_size, without = covered()
    if not names:
        return with_size
    for name in names:
        if name in without:
            raise UsageError(f"experiment {name!r} has no CI size; add one to CI_SIZES in harness/baselines.py")
        if name not in with_size:
            raise UsageError(f"unknown experiment {name!r}; experiments with a baseline: {', '.join(with_size)}")
    return list(names)


def run_ci_size(experiment: str, out: Path) -> Any:
    """Run one experiment at its CI size into `out`; returns the runner's RunResult."""
    from harness.runner import RunConfig, run_experiment

    size = CI_SIZES[experiment]
    config = RunConfig(
        experiment=experiment, variants=list(size.variants), params=dict(size.params),
        probes=list(size.probes), measure_overhead=False, plots=False, out=out,
        trial_env=dict(size.trial_env), command=f"python -m harness.baselines (CI size of {experiment})",
    )
    return run_experiment(config, show_progress=False)


def baseline_dir(experiment: str, root: Path = BASELINES_DIR) -> Path:
    return Path(root) / experiment


def same_python_minor(experiment: str = "exp17", root: Path = BASELINES_DIR) -> bool:
    """Whether this interpreter's minor version is the one the baseline was made
    on: compare refuses others, since the collector and allocator differ."""
    from harness.results import read_meta

    made_on = read_meta(baseline_dir(experiment, root))["python"].split(".")[:2]
    return made_on == [str(sys.version_info.major), str(sys.version_info.minor)]


BASELINE_FILES = ("summary.csv", "meta.json")


def _writable(target: Path) -> None:
    """Refuse, before running anything, a baseline directory that cannot be
    written because something is in the way: a file where a directory of its
    path should be, or a directory where one of its files should be."""
    for ancestor in (target, *target.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UsageError(f"cannot write the baseline to {target}: {ancestor} is a file, not a directory")
            break
    for name in BASELINE_FILES:
        if (target / name).exists() and not (target / name).is_file():
            raise UsageError(f"cannot write the baseline to {target}: {target / name} is in the way (not a file)")


def refresh(experiment: str, root: Path = BASELINES_DIR) -> Path:
    """Run at CI size and write the baseline; refuse a run that failed or fails its checks."""
    target = baseline_dir(experiment, root)
    _writable(target)
    with tempfile.TemporaryDirectory(prefix="baseline-") as scratch:
        result = run_ci_size(experiment, Path(scratch))
        if not result.ok:
            failed = [c.line() for c in result.checks if not c.passed]
            failed += [f"trial {t['trial']} {t['variant']} {t['status']}: {t['error']}"
                       for t in result.meta.get("failed_trials", [])]
            raise UsageError(f"{experiment}: the run is not a healthy baseline, not written: {'; '.join(failed)}")
        meta = dict(result.meta)
        meta["baseline"] = {"refreshed_by": "python -m harness.baselines refresh", "ci_size": CI_SIZES[experiment].params}
        # Paths of the scratch run mean nothing once it is gone.
        meta.pop("executable", None)
        try:
            target.mkdir(parents=True, exist_ok=True)
            write_atomic(target / "summary.csv", (result.path / "summary.csv").read_text(encoding="utf-8"))
            write_json(target / "meta.json", meta)
        except OSError as error:  # in the way since the check above, permissions, a full disk ...
            where = f": {error.filename}" if error.filename else ""
            raise UsageError(f"cannot write the baseline to {target}: {error.strerror or error}{where}") from None
    return target


def check(experiment: str, root: Path = BASELINES_DIR, tolerance: float | None = None) -> int:
    """Run at CI size and compare with the committed baseline; the compare exit
    code, and 2 when a trial of either was not compared (see the module doc)."""
    from harness.compare import DEFAULT_TOLERANCE, check_settings, compare, report
    from harness.results import read_meta

    # Bad input and a missing or corrupt baseline are said before the run, not after it.
    check_settings(DEFAULT_TOLERANCE if tolerance is None else tolerance)
    read_meta(baseline_dir(experiment, root))
    with tempfile.TemporaryDirectory(prefix="baseline-check-") as scratch:
        result = run_ci_size(experiment, Path(scratch))
        comparison = compare(baseline_dir(experiment, root), result.path, tolerance, require_every_trial=True)
        print(report(comparison))
        return comparison.exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, no usage dump
        print(f"{self.prog}: error: {message}; see {self.prog} -h", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None, prog: str = "python -m harness.baselines") -> int:
    """`python -m harness.baselines ACTION` and `harness baselines ACTION`."""
    parser = _Parser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("refresh", "check", "list"))
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="default: every one with a CI size")
    parser.add_argument("--dir", type=Path, default=BASELINES_DIR, help=f"baselines root (default {BASELINES_DIR})")
    parser.add_argument("--tolerance", type=float, default=None, help=f"for check: {TOLERANCE_HELP}")
    args = parser.parse_args(argv)
    try:
        if args.action == "list":
            with_size, without = covered()
            for name in with_size:
                print(f"{name}  {CI_SIZES[name].params}  {baseline_dir(name, args.dir)}")
            for name in without:
                print(f"{name}  no CI size (not covered)")
            return 0
        names = _chosen(args.experiments)
    except UsageError as error:
        return _error(error)
    worst = 0
    for name in names:  # one experiment's error does not hide the others' verdicts
        try:
            if args.action == "refresh":
                print(f"{name}: baseline written to {refresh(name, args.dir)}")
            else:
                worst = max(worst, check(name, args.dir, args.tolerance))
        except UsageError as error:
            worst = max(worst, _error(error))
    return worst


def _error(error: UsageError) -> int:
    print(f"harness.baselines: error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
