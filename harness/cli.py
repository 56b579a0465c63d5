"""`python -m harness` (also the `harness` console script).

    list                      experiments, their variants and parameters; variants; probes
    run EXP [options]         run an experiment; prints the summary, the checks, and
                              the run directory as its last line
    show RUN                  the summary of a finished run again
    check RUN                 the experiment's expectations on a run; exit 1 if one fails
    compare A B               regression between two runs (or a run and a baseline)
    explain VARIANT           what an engine does to memory, and why
    baselines ACTION          refresh, check or list the committed baselines

RUN is a run directory, `latest` (the newest run under results/) or an
experiment's name (its newest run). `list`, `show`, `check` and `compare`
take `--format json` or `--format csv` for machines.

Exit status: 0 ok; 1 a trial failed, was killed or timed out, or a check
failed (the run's status says which: failed, checks_failed); 2 bad input (one line on stderr; `--debug`, anywhere on the command
line, shows the traceback), including a run the memory guard refuses; 130
or 143 when `run` was stopped by SIGINT (Ctrl-C) or SIGTERM, after writing
what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

from typing import TYPE_CHECKING

from harness.errors import ResultsNotWritten, UsageError
from harness.output_formats import FORMATS, emit, records
from harness.tolerance import TOLERANCE_HELP

if TYPE_CHECKING:  # pandas is imported by the commands that read tables, not by --help
    import pandas as pd

EXIT_USAGE = 2
EXIT_FAILED = 1
SUMMARY_VIEW = (
    "variant", "repeat", "status", "numpy_bytes_final", "expected_numpy_bytes_final",
    "bound_numpy_bytes_final", "measured_over_expected", "numpy_bytes_peak", "rss_peak_bytes",
    "gc_collections", "gc_collected_objects", "live_functions_final",
)
# Shown only when some trial has a value (a bound is printed as a bound, beside no ratio).
SHOWN_WHEN_SET = ("bound_numpy_bytes_final",)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dezero-memlab")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def resolve_run_dir(path: Path) -> Path:
    """A run directory as given; `latest`: the newest run under results/; an
    experiment's name (with no such directory here): its newest run there.
    Run ids are start times, so the newest is the latest start."""
    from harness.results import read_meta
    from harness.runner import DEFAULT_OUT

    if path.exists() or len(path.parts) != 1:
        return path
    name = str(path)
    pattern = "*/*" if name == "latest" else f"{name}/*"
    runs = [run for run in DEFAULT_OUT.glob(pattern) if run.is_dir() and (run / "meta.json").is_file()
            and run.parent.name != "baselines"]
    if not runs:
        if name == "latest":
            raise UsageError(f"no run under {DEFAULT_OUT}/ to call latest")
        raise UsageError(f"{name} is neither a run directory nor an experiment with a run under {DEFAULT_OUT}/")
    # Start times are to the second: two runs of one second are told apart by when they ended.
    return max(runs, key=lambda run: (str(read_meta(run).get("started") or ""),
                                      (run / "meta.json").stat().st_mtime_ns, run.name))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="dezero-memlab: memory experiments on DeZero-style engines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"dezero-memlab {_version()}")
    # --debug is also taken after the command, where people type it.
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    formats = _Parser(add_help=False)
    formats.add_argument("--format", choices=FORMATS, default="text",
                         help="text for people (default), json or csv for machines")
    run_arg = "a run directory, `latest` (the newest under results/) or an experiment's name (its newest run)"

    commands.add_parser("list", help="experiments, variants and probes", parents=[debug, formats])

    run = commands.add_parser("run", help="run an experiment", parents=[debug])
    run.add_argument("experiment")
    run.add_argument("--variant", action="append", default=[], metavar="NAME",
                     help="variant to run (repeatable; default: the experiment's own)")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter; KEY=V1,V2 sweeps (repeatable)")
    run.add_argument("--repeats", type=_whole, default=1, help="trials per variant and parameters (default 1)")
    run.add_argument("--jobs", type=_whole, default=1, help="trials run at once (default 1)")
    run.add_argument("--out", type=_directory, default=Path("results"), help="output directory (default results/)")
    run.add_argument("--probe", action="append", default=[], metavar="NAME",
                     help="probe to enable (repeatable; default: the experiment's own)")
    run.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="fail a trial that runs longer than this")
    run.add_argument("--overhead", action="store_true",
                     help="also time the workload with no probe, every probe and each alone, in 7 interleaved "
                          "rounds per trial, and report median ratios with their interquartile range")
    run.add_argument("--no-overhead", action="store_true", help=argparse.SUPPRESS)  # the default now
    run.add_argument("--verify-observer", action="store_true",
                     help="run a twin of each trial with no probe and check that the probes did not move the GC")
    run.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    run.add_argument("--quiet", action="store_true",
                     help="no progress (by default a bar on a terminal, a line per trial in a log)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                     help="environment for the trial processes, e.g. MALLOC_MMAP_THRESHOLD_=65536 (repeatable)")
    run.add_argument("--malloc-trim", action="store_true",
                     help="call glibc malloc_trim(0) before each sample so RSS shows freed memory")
    run.add_argument("--python", action="append", default=[], metavar="VERSION|PATH",
                     help="run every trial under this interpreter too, e.g. --python 3.11 --python 3.13 "
                          "(repeatable; its environment is prepared once with uv)")
    run.add_argument("--cold-trials", action="store_true",
                     help="start each trial as a new interpreter instead of forking it from a "
                          "pre-imported fork server (slower; the figures are the same)")
    run.add_argument("--force", action="store_true",
                     help="run trials the memory guard refuses, each under an address-space limit")
    run.add_argument("--executor", choices=("local", "dask"), default="local",
                     help="where trials run: local processes (default), or one Dask task each (docs/scaling.md)")
    run.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                     help="with --executor dask: the cluster's scheduler; default: a LocalCluster of --jobs workers")

    show = commands.add_parser("show", help="print a run's summary", parents=[debug, formats])
    show.add_argument("run_dir", type=Path, metavar="RUN", help=run_arg)

    check = commands.add_parser("check", help="evaluate a run against its experiment's expectations",
                                parents=[debug, formats])
    check.add_argument("run_dir", type=Path, metavar="RUN", help=run_arg)

    compare = commands.add_parser("compare", help="compare two runs (or a run and a baseline)",
                                  parents=[debug, formats])
    compare.add_argument("baseline", type=Path)
    compare.add_argument("current", type=Path)
    compare.add_argument("--tolerance", type=float, default=None, help=TOLERANCE_HELP)

    report = commands.add_parser(
        "report", help="(re)build a run's report.html, or put two runs side by side in one page",
        parents=[debug])
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN", help=run_arg + "; two: A (as the baseline) and B")
    report.add_argument("--out", type=Path, default=None, metavar="FILE.html",
                        help="where the page goes (default: RUN/report.html; for two runs "
                             "report-A-vs-B.html here, never over an existing file)")

    explain = commands.add_parser(
        "explain", help="what an engine does to memory, and why: ownership, grads, the cycle, a picture",
        parents=[debug])
    explain.add_argument("variant", help="a built-in variant, file:PATH.py or module:NAME")
    explain.add_argument("--json", action="store_true", help="the findings as JSON")
    explain.add_argument("--out", type=Path, default=Path("results") / "explain",
                         help="where the picture goes (PNG, SVG and DOT; default: results/explain)")
    explain.add_argument("--no-picture", action="store_true", help="draw no picture")

    baselines = commands.add_parser(
        "baselines", help="the committed baselines: refresh, check or list them (see `harness baselines -h`)",
        add_help=False)
    baselines.add_argument("arguments", nargs=argparse.REMAINDER, help="refresh|check|list [EXPERIMENT ...]")
    return parser


def _whole(text: str) -> int:
    # 1e3 is read as it is in --param: a whole number written short.
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if not math.isfinite(number) or not number.is_integer():
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        value = int(number)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of seconds, got {text!r}")
    return value


def _directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("takes a directory, got an empty name")
    return Path(text)


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env takes KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _print_table(table: pd.DataFrame, columns: Sequence[str]) -> None:
    import pandas as pd

    view = table[[c for c in columns if c in table]]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(view.astype(object).where(view.notna(), "-").to_string(index=False))


def _summary_columns(summary: pd.DataFrame, experiment_params: Sequence[str],
                     own: Sequence[str] = ()) -> list[str]:
    """The view of a summary: identity, swept parameters, the measured figures,
    then `own`, the figures the workload derived from its records (exp_mlp's losses)."""
    swept = [p for p in experiment_params if p in summary and summary[p].nunique(dropna=False) > 1]
    view = [c for c in SUMMARY_VIEW[1:]
            if c not in SHOWN_WHEN_SET or (c in summary and summary[c].notna().any())]
    if "interpreter" in swept:  # --python: each trial's full version and gen-0 threshold beside it
        swept = [*swept, "python", "gc_threshold_gen0"]
    return ["variant", *swept, *view, *own]


def cmd_list(fmt: str = "text") -> int:
    from engine.variants import all_variants
    from harness.probes import DEFAULT_PROBES, PROBE_DESCRIPTIONS
    from harness.registry import all_experiments

    experiments = [{
        "name": e.name, "seed_step": e.seed_step, "title": e.title, "variants": list(e.variants),
        "params": [{"name": p.name, "default": e.default_values(p.name), "choices": list(p.choices or ()),
                    "help": p.help} for p in e.params],
    } for e in all_experiments().values()]
    variants = [{"name": v.name, "origin": v.origin, "description": v.description, "available": v.available(),
                 "install_hint": v.install_hint} for v in all_variants()]
    probes = [{"name": name, "description": text, "default": name in DEFAULT_PROBES}
              for name, text in PROBE_DESCRIPTIONS.items()]
    if fmt != "text":
        rows = ([{"kind": "experiment", "name": e["name"], "description": e["title"]} for e in experiments]
                + [{"kind": "variant", "name": v["name"], "description": v["description"]} for v in variants]
                + [{"kind": "probe", "name": p["name"], "description": p["description"]} for p in probes])
        emit(fmt, {"experiments": experiments, "variants": variants, "probes": probes}, rows)
        return 0
    print("experiments:")
    for e in experiments:
        print(f"  {e['name']}  (seed step {e['seed_step']})  {e['title']}")
        print(f"    variants: {', '.join(e['variants'])}")
        for p in e["params"]:
            choices = f" {{{', '.join(map(str, p['choices']))}}}" if p["choices"] else ""
            print(f"    --param {p['name']}={','.join(str(v) for v in p['default'])}{choices}  {p['help']}")
    print("variants:")
    for v in variants:
        state = "" if v["available"] else f"  [not installed: {v['install_hint']}]"
        print(f"  {v['name']}  ({v['origin']})  {v['description']}{state}")
    print("probes (default: " + ", ".join(DEFAULT_PROBES) + "):")
    for p in probes:
        print(f"  {p['name']}  {p['description']}")
    return 0


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.executor == "local" and not args.cold_trials and not args.env:
        # Trials will fork from a pre-imported server (harness.fork_server): start it
        # first, so that its imports run beside the run's own.
        from harness.fork_server import server_for
        from harness.meta import trial_environment

        server_for(sys.executable, trial_environment({}))
    from harness.registry import find
    from harness.runner import RunConfig, parse_param_overrides, run_experiment

    experiment, _ = find(args.experiment)
    config = RunConfig(
        experiment=args.experiment,
        variants=args.variant,
        params=parse_param_overrides(experiment, args.param),
        repeats=args.repeats,
        jobs=args.jobs,
        out=args.out,
        probes=args.probe,
        timeout_s=args.timeout,
        measure_overhead=args.overhead,
        verify_observer=args.verify_observer,
        plots=not args.no_plots,
        trial_env=_env_pairs(args.env),
        malloc_trim=args.malloc_trim,
        force=args.force,
        cold_trials=args.cold_trials,
        pythons=args.python,
        executor=args.executor,
        scheduler=args.scheduler,
        command="python -m harness " + " ".join(argv),
    )
    result = run_experiment(config, show_progress=not args.quiet)
    summary = result.tables["summary"]
    _print_table(summary, _summary_columns(summary, list(result.meta.get("params", {})),
                                           result.meta.get("recorded_figures", [])))
    for failure in result.meta.get("failed_trials", []):
        print(f"trial {failure['trial']} {failure['variant']} {failure['status']}: {failure['error']}")
    _print_checks(result.checks, summary)
    print(f"status: {result.meta['status']}")
    print(result.path)
    if result.interrupted_by is not None:
        return 128 + result.interrupted_by  # the shell's convention for "stopped by this signal"
    return 0 if result.ok else EXIT_FAILED


def _print_checks(checks: list, summary) -> None:
    """The checks, and the trials no model judges: the same lines after `run` and from `check`."""
    if checks:
        print(f"checks: {sum(c.passed for c in checks)} passed, {sum(not c.passed for c in checks)} failed")
        for check in checks:
            print("  " + check.line())
    else:
        print("no expectation applies to this run's trials (measured, not checked)")
    if "model_variant" in summary and "status" in summary:
        unjudged = summary[(summary["status"] == "ok") & summary["model_variant"].isna()]
        if len(unjudged):
            reasons = sorted({str(r) for r in unjudged.get("model_reason", []) if isinstance(r, str) and r})
            print(f"not judged: {len(unjudged)} trial(s) with no model ({', '.join(sorted(set(unjudged['variant'])))})"
                  + (f": {'; '.join(reasons)}" if reasons else ""))


def cmd_show(args: argparse.Namespace) -> int:
    from harness.results import load_run

    run = load_run(resolve_run_dir(args.run_dir))
    meta = run.meta
    if args.format != "text":
        emit(args.format, {"path": str(run.path), "meta": meta, "summary": records(run.summary)}, run.summary)
        return 0
    print(f"{meta['experiment']}  run {meta.get('run_id')}  status {meta.get('status')}  "
          f"started {meta.get('started')}  python {meta.get('python')}")
    print(f"command: {meta.get('command')}")
    param_names = list(meta.get("params", {}))
    _print_table(run.summary, _summary_columns(run.summary, param_names, meta.get("recorded_figures", [])))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from harness.experiment_record import checks_of_run, is_built_in
    from harness.results import load_run

    run = load_run(resolve_run_dir(args.run_dir))
    checks = checks_of_run(run.path, run.meta, run.summary)
    if args.format == "text" and not is_built_in(run.meta):
        print(f"(checks as judged when the run ended: {run.meta['experiment']} is defined by "
              f"{run.meta['experiment_source']['ref']}, which reading a run does not import)")
    status = run.meta.get("status")
    trials_incomplete = status not in ("ok", "checks_failed")  # the checks are judged afresh below
    # The verdict `run` gave: the run complete and no check failed (trials no model judges fail nothing).
    passed = all(c.passed for c in checks) and not trials_incomplete
    if args.format != "text":
        rows = [{"passed": c.passed, "trial": c.trial, "variant": c.variant, "measured": c.measured,
                 "expected": getattr(c, "expected", getattr(c, "reference", None)), "line": c.line()}
                for c in checks]
        emit(args.format, {"path": str(run.path), "run_status": status, "passed": passed,
                           "checks": rows, "not_judged": _unjudged_variants(run.summary)}, rows)
        return 0 if passed else EXIT_FAILED
    _print_checks(checks, run.summary)
    if trials_incomplete:
        print(f"run status: {status}")
    return 0 if passed else EXIT_FAILED


def _unjudged_variants(summary: pd.DataFrame) -> list[str]:
    if "model_variant" not in summary or "status" not in summary:
        return []
    unjudged = summary[(summary["status"] == "ok") & summary["model_variant"].isna()]
    return sorted(set(unjudged["variant"]))


def cmd_explain(args: argparse.Namespace) -> int:
    from harness.explain import explain

    print(explain(args.variant, None if args.no_picture else args.out, as_json=args.json))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.compare import compare, compare_runs, verdict_line

    if args.format == "text":
        return compare_runs(args.baseline, args.current, args.tolerance)
    comparison = compare(args.baseline, args.current, args.tolerance)
    rows = [{"trial": r.trial, "metric": r.metric, "kind": r.kind, "baseline": r.baseline, "current": r.current,
             "ratio": r.ratio, "p": r.p, "repeats_baseline": r.repeats[0] if r.repeats else None,
             "repeats_current": r.repeats[1] if r.repeats else None, "verdict": r.verdict, "note": r.note}
            for r in comparison.rows]
    emit(args.format, {"baseline": str(comparison.baseline.path), "current": str(comparison.current.path),
                       "tolerance": comparison.tolerance, "verdict": verdict_line(comparison),
                       "exit_code": comparison.exit_code, "warnings": comparison.warnings,
                       "uncompared": comparison.uncompared, "rows": rows}, rows)
    return comparison.exit_code


def cmd_report(args: argparse.Namespace) -> int:
    import re

    from harness.report import REPORT_FILE, write_comparison, write_report

    if len(args.runs) > 2:
        raise UsageError(f"report takes one run or two (A and B), got {len(args.runs)}")
    runs = [resolve_run_dir(run) for run in args.runs]
    if len(runs) == 1 and args.out is None:  # derived from the run's data: rebuilt in place
        print(write_report(runs[0]))
        return 0
    named = "-vs-".join(re.sub(r"[^\w.-]", "_", f"{run.parent.name}-{run.name}") for run in runs)
    out = args.out or Path(f"report-{named}.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out}: a report is an .html file")
    if out.exists() or out.name == REPORT_FILE and out.parent.resolve() in {r.resolve() for r in runs}:
        raise UsageError(f"{out} exists or is a run's own report; choose another --out "
                         "(a report is never written over a file)")
    print(write_comparison(*runs, out) if len(runs) == 2 else write_report(runs[0], out=out))
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from harness.baselines import main as baselines_main

    return baselines_main(args.arguments, prog="harness baselines")


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    commands = {"list": lambda: cmd_list(args.format), "run": lambda: cmd_run(args, argv),
                "show": lambda: cmd_show(args), "check": lambda: cmd_check(args),
                "explain": lambda: cmd_explain(args), "compare": lambda: cmd_compare(args),
                "report": lambda: cmd_report(args), "baselines": lambda: cmd_baselines(args)}
    return commands[args.command]()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        status = _dispatch(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is seen below
        return status
    except UsageError as error:
        if debug:
            if error.detail:  # e.g. the traceback of a plugin's import, in its own process
                print(error.detail, file=sys.stderr)
            raise
        print(f"harness: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before a run started or after it ended: nothing to save
        if debug:
            raise
        print("harness: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # `harness show RUN | head`: the reader had enough, which is no error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ResultsNotWritten as error:  # the trials ran; show what they measured before the error
        _print_table(error.summary, SUMMARY_VIEW)
        print(f"harness: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:  # the machine, not the input: a full disk, a vanished directory
        if debug:
            raise
        print(f"harness: error: {error}", file=sys.stderr)
        return EXIT_FAILED
