"""The experiment runner: plans the trials, runs each in a fresh process,
gathers their events into tables, and writes the run directory.

A plan is the product of the chosen variants, every combination of swept
parameter values (`--param size=1e3,1e4`), and the repeats. Trials run one
at a time by default so their measurements do not compete for the machine;
`jobs` runs that many at once.

Before anything is written, the memory guard (`harness.guard`) refuses a
plan the machine cannot hold. Each trial runs in its own process group, so
a Ctrl-C at the terminal reaches the run, not the trials: on SIGINT or
SIGTERM the run kills the running trials' groups, starts no new one, writes
what was measured and records the run as interrupted.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import numbers
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pandas as pd

from engine.adapters.plugin import is_plugin
from engine.variants import UnknownVariantError, check_plugin, get_variant, pickled, user_registered
from harness.errors import ResultsNotWritten, UsageError
from harness.experiment import Experiment, Params
from harness.experiment_record import CHECKS_FILE, checks_table, describe, record_definition
from harness.fork_server import ForkedTrial, ForkServer, server_for
from harness.guard import GuardReport, check_memory, trial_needs
from harness.inference import INFERRED, choose_all
from harness import interpreters
from harness.interpreters import INTERPRETER_PARAM, Interpreter, with_interpreters
from harness.meta import PROJECT_ROOT, collect_metadata, trial_environment
from harness.probes import PROBE_NAMES, sample_columns_for
from harness.probes.sampler import read_phases
from harness import registry
from harness.table_writer import RunTableWriter
from harness.tables import IDENTITY, TrialOutcome
from harness.trial import TrialSpec, overhead_reruns, phase_file, sample_file

DEFAULT_OUT = Path("results")
# A trial's timeout goes to poll(), which takes whole milliseconds in a C int.
MAX_TIMEOUT_S = (2**31 - 1) // 1000
# The plan is built in the parent before anything runs; past this it is a typo.
MAX_TRIALS = 100_000
EXECUTORS = ("local", "dask")


@dataclass
class RunConfig:
    # A name, a file (PATH.py), module:NAME, or an Experiment defined in a notebook (harness.registry).
    experiment: str | Experiment
    variants: Sequence[str] = ()
    params: dict[str, Any] = field(default_factory=dict)  # name -> value or list of values
    repeats: int = 1
    jobs: int = 1
    out: Path = DEFAULT_OUT
    probes: Sequence[str] = ()
    timeout_s: float | None = None
    measure_overhead: bool = False
    plots: bool = True
    command: str = ""
    # Allocator controls, so RSS shows freed memory: extra environment for
    # the trial processes (e.g. MALLOC_MMAP_THRESHOLD_=65536 puts every array
    # of 64 KiB or more in its own mapping, returned to the OS when freed),
    # and malloc_trim(0) before each sample.
    trial_env: dict[str, str] = field(default_factory=dict)
    malloc_trim: bool = False
    # Run trials the memory guard would refuse, each under an address-space limit.
    force: bool = False
    # Where trials run: "local" (processes of this machine) or "dask" (one task each on
    # a Dask cluster: `scheduler`'s, or a LocalCluster of `jobs` workers; harness.dask_executor).
    executor: str = "local"
    scheduler: str | None = None
    # Run a blind twin beside every trial and check that the probes did not
    # move the collector (harness.observer).
    verify_observer: bool = False
    # Interpreters every trial of the plan runs under (`--python 3.11 --python
    # 3.13`: a version or a path; harness.interpreters); empty: this one.
    pythons: Sequence[str] = ()
    # Start every trial as a new interpreter (`python -m harness.trial`) instead
    # of forking it from a pre-imported fork server (harness.fork_server).
    cold_trials: bool = False


@dataclass
class Plan:
    experiment: Experiment
    variants: list[str]
    param_sets: list[Params]
    probes: list[str]
    config: RunConfig
    source: registry.Source = registry.Source(registry.BUILT_IN, "")
    notes: list[str] = field(default_factory=list)
    # --python: the interpreters by minor version ("3.13"), a plan parameter of their own
    interpreters: dict[str, Interpreter] = field(default_factory=dict)
    # and the executable each one's trials run with, once its environment is prepared
    executables: dict[str, str] = field(default_factory=dict)
    code_path: str | None = None  # the trials' PYTHONPATH under another interpreter

    def specs(self, run_dir: Path, memory_limit_bytes: int | None = None) -> list[TrialSpec]:
        """The trials of the plan (and, with verify_observer, their blind twins after them)."""
        specs = []
        combos = itertools.product(self.param_sets, self.variants, range(self.config.repeats))
        shipped = {v: pickled(v) for v in self.variants if user_registered(v)}  # trials are fresh processes
        experiment_pickle = registry.pickled(self.experiment.name) if self.source.kind == registry.NOTEBOOK else None
        for n, (params, variant, repeat) in enumerate(combos):
            label = "".join(c if c.isalnum() or c in "-_" else "_" for c in variant)[:40]
            specs.append(
                TrialSpec(
                    trial=n,
                    experiment=self.source.ref,
                    variant=variant,
                    params=dict(params),
                    repeat=repeat,
                    seed=int(params.get("seed", 0)) + repeat,
                    probes=list(self.probes),
                    events_path=str(run_dir / "trials" / f"{n:04d}-{label}-r{repeat}.jsonl"),
                    measure_overhead=self.config.measure_overhead,
                    malloc_trim=self.config.malloc_trim,
                    memory_limit_bytes=memory_limit_bytes,
                    parent_pid=os.getpid(),
                    variant_pickle=shipped.get(variant),
                    experiment_pickle=experiment_pickle,
                    **self._interpreter_of(params),
                )
            )
        if self.config.verify_observer:
            specs += [replace(spec, trial=spec.trial + len(specs), blind=True, measure_overhead=False,
                              events_path=str(_blind_path(Path(spec.events_path)))) for spec in specs]
        return specs

    def _interpreter_of(self, params: Params) -> dict[str, Any]:
        minor = params.get(INTERPRETER_PARAM)
        if minor is None or self.interpreters[minor].is_own:
            return {}
        return {"python": self.executables[minor], "pythonpath": self.code_path}

    def prepare_interpreters(self, say: Callable[[str], None]) -> None:
        """Each interpreter's environment, before any trial starts (one line and exit 2 if one fails)."""
        if not self.interpreters:
            return
        needs = interpreters.requirements(self.variants)
        self.executables = {minor: interpreters.environment(found, needs, say)
                            for minor, found in self.interpreters.items()}
        if any(not found.is_own for found in self.interpreters.values()):
            self.code_path = interpreters.project_path(interpreters.cache_dir().parent / "code" / _code_key())


def _code_key() -> str:
    import hashlib

    return hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:16]


def _blind_path(events_path: Path) -> Path:
    return events_path.with_name(events_path.stem + "-blind" + events_path.suffix)


def parse_param_overrides(experiment: Experiment, items: Sequence[str]) -> dict[str, list[Any]]:
    """`KEY=VALUE` or `KEY=V1,V2,...` (a sweep) -> checked values by name."""
    overrides: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes KEY=VALUE, got {item!r}")
        param = experiment.param(key.strip())
        if param.name in overrides:
            raise UsageError(f"--param {param.name} is given twice; sweep with --param {param.name}=V1,V2")
        values = [param.parse(v.strip()) for v in text.split(",")]
        if not text.strip() or any(v == "" for v in values):
            raise UsageError(f"--param {key} needs a value")
        overrides[param.name] = values
    return overrides


def make_plan(config: RunConfig) -> Plan:
    experiment, source = registry.find(config.experiment)
    chosen_pythons = _interpreters(config)
    if chosen_pythons:
        experiment = with_interpreters(experiment, list(chosen_pythons))
    variants = list(config.variants) or list(experiment.variants)
    offered: dict[str, frozenset[str]] = {}  # each engine's ops, where known before a trial
    notes: list[str] = []  # said before the run starts
    for name in variants:
        try:
            variant = get_variant(name)
            if is_plugin(name):
                found = check_plugin(name)
                offered[name] = frozenset(found.get("ops", ()))
                if not found.get("has_function") and not found.get("provides_engine"):
                    notes.append(f"variant {name!r} defines no Function: its live_functions figures stay empty")
        except UnknownVariantError as error:
            raise UsageError(str(error), getattr(error, "detail", "")) from None
        if not variant.available():
            raise UsageError(f"variant {name!r} is not installed: {variant.install_hint}")
        if variant.offers is not None:
            offered[name] = variant.offers()
    if len(set(variants)) != len(variants):
        raise UsageError("a variant is named twice")
    for name, count in (("--repeats", config.repeats), ("--jobs", config.jobs)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise UsageError(f"{name} must be a whole number of at least 1, got {count!r}")
    if not isinstance(config.trial_env, Mapping):
        raise UsageError(f"trial_env must map names to values, got {type(config.trial_env).__name__}")
    for key, value in config.trial_env.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise UsageError(f"--env takes KEY=VALUE, got a bad name {key!r}")
        if not isinstance(value, str):
            raise UsageError(f"--env {key}: the value must be a string, got {value!r}")
    if config.executor not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {config.executor!r}")
    if config.scheduler is not None and config.executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    timeout = config.timeout_s
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not (0 < timeout <= MAX_TIMEOUT_S)):
        raise UsageError(f"--timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:,} "
                         f"(24 days), got {timeout!r}")
    probes = list(config.probes) or list(experiment.probes)
    for probe in probes:
        if probe not in PROBE_NAMES:
            raise UsageError(f"unknown probe {probe!r}; choose from: {', '.join(PROBE_NAMES)}")

    if chosen_pythons:
        interpreters.refuse_own_only(list(chosen_pythons.values()), variants)
    values: dict[str, list[Any]] = {p.name: experiment.default_values(p.name) for p in experiment.params}
    if chosen_pythons:
        values[INTERPRETER_PARAM] = list(chosen_pythons)
    for name, given in config.params.items():
        param = experiment.param(name)
        given_list = given if isinstance(given, (list, tuple)) else [given]
        values[name] = [param.validate(v) for v in given_list]
    for name, vals in values.items():
        if not vals:
            raise UsageError(f"parameter {name!r} has no value")
    trials = math.prod(len(v) for v in values.values()) * len(variants) * config.repeats
    if trials > MAX_TRIALS:
        raise UsageError(f"the plan has {trials:,} trials; one run takes at most {MAX_TRIALS:,} "
                         "(fewer repeats or parameter values)")
    names = list(values)
    param_sets = [Params(zip(names, combo)) for combo in itertools.product(*values.values())]
    for name, ops in offered.items():
        for params in param_sets:
            missing = sorted(experiment.ops(params) - ops)
            if missing:
                raise UsageError(
                    f"variant {name!r} has no {', '.join(missing)}, which {experiment.name} needs"
                    + (f" (op={params['op']})" if "op" in params else "")
                    + f"; it offers {', '.join(sorted(ops)) or 'no op'}")
    return Plan(experiment, variants, param_sets, probes, config, source, notes, chosen_pythons)


def _interpreters(config: RunConfig) -> dict[str, Interpreter]:
    if isinstance(config.pythons, (str, bytes)) or not all(isinstance(p, str) for p in config.pythons):
        raise UsageError(f"pythons must be a list of versions or paths, got {config.pythons!r}")
    found: dict[str, Interpreter] = {}
    for requested in config.pythons:
        interpreter = interpreters.find(requested)
        if interpreter.minor in found:
            raise UsageError(f"--python {requested}: Python {interpreter.minor} is named twice "
                             f"({found[interpreter.minor].path} and {interpreter.path})")
        found[interpreter.minor] = interpreter
    return found


def _read_events(spec: TrialSpec, outcome: TrialOutcome) -> None:
    path = Path(spec.events_path)
    outcome.probes = [] if spec.blind else list(spec.probes)
    # The sample rows and the timeline stay on disk: the table writer reads
    # them a chunk at a time (harness.table_writer).
    outcome.samples_path = str(sample_file(path))
    outcome.sample_columns = sample_columns_for(spec.probes, spec.blind)[:-1]  # without the marker
    outcome.phases = read_phases(phase_file(path))
    outcome.events_path = str(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if line.startswith('{"event": "timeline"'):
                continue  # long; read by TrialOutcome.timeline_chunks when written
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut off by a kill: keep what came before
            kind = event.pop("event", None)
            if kind == "record":
                outcome.records.append(event)
            elif kind == "overhead":
                outcome.result.update(event)
            elif kind == "start":
                outcome.start = event
            elif kind == "result":
                outcome.result = {**event, **outcome.result}
            elif kind == "error":
                outcome.status, outcome.error = "failed", event["error"]


class Interruption:
    """SIGINT, SIGTERM or SIGHUP during a run: kill the running trials, start no more.

    The handler runs in the main thread while it waits for trials; the
    trials themselves are watched by pool threads, which see their process
    die and record it as interrupted.
    """

    # SIGHUP: the terminal closed or the ssh connection dropped.
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._lock = threading.RLock()  # re-entrant: the handler may interrupt a holder
        self._running: set[subprocess.Popen] = set()

    def stop(self, signum: int, frame: Any = None) -> None:
        if self.signum is None:
            self.signum = signum
        with self._lock:
            for process in self._running:
                kill_group(process)

    def started(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.add(process)
            if self.signum is not None:  # the signal came while this trial was being started
                kill_group(process)

    def finished(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(process)

    @contextlib.contextmanager
    def handling_signals(self) -> Iterator["Interruption"]:
        """Install the handlers (only the main thread can; elsewhere, e.g. a
        notebook's worker thread, signals keep their usual effect)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self.stop) for signum in self.SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a trial and whatever it started (the sampled probe's RSS watcher):
    its events are flushed line by line, so nothing it recorded is lost."""
    if process.poll() is not None:
        return  # reaped: its pid may belong to someone else now
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def execute_trial(
    spec: TrialSpec, timeout_s: float | None, env: dict[str, str], interruption: Interruption | None = None,
    server: ForkServer | None = None,
) -> TrialOutcome:
    """Run one trial in a fresh process -- forked from `server` when given, else
    a new interpreter -- and read back what it recorded."""
    interruption = interruption or Interruption()
    if interruption.signum is not None:
        return not_started(spec, interruption.signum)
    returncode, timed_out = run_trial_process(spec, timeout_s, trial_environment(env, spec.pythonpath),
                                              interruption, server)
    return judge_trial(spec, returncode, timed_out, timeout_s, interruption.signum)


def forkable(spec: TrialSpec, config: RunConfig) -> bool:
    """Whether this trial may be forked from a fork server: it needs no
    environment of its own at exec and reads no USS (harness.fork_server says
    why each matters)."""
    return (config.executor == "local" and not config.cold_trials and not config.trial_env
            and "uss" not in spec.probes)


def not_started(spec: TrialSpec, signum: int) -> TrialOutcome:
    outcome = TrialOutcome(spec.trial, spec.variant, spec.repeat, spec.params, status="interrupted")
    outcome.error = f"not started: the run was stopped by {signal.Signals(signum).name}"
    return outcome


def run_trial_process(spec: TrialSpec, timeout_s: float | None, env: dict[str, str],
                      interruption: Interruption, server: ForkServer | None = None) -> tuple[int, bool]:
    """`python -m harness.trial` (or a fork of `server`'s) with the spec on stdin, its output to
    the .log beside its event log, run to its end or its timeout: its exit status, and whether
    the timeout killed it."""
    log_path = Path(spec.events_path).with_suffix(".log")
    timed_out = False
    with log_path.open("w", encoding="utf-8") as log:
        process: subprocess.Popen | ForkedTrial | None = None
        spec_text: str | None = None  # a forked trial has its spec already
        if server is not None:
            with contextlib.suppress(OSError):  # the server is gone: this trial starts cold
                process = server.start(spec, log.fileno())
        if process is None:
            process = subprocess.Popen(
                [spec.python or sys.executable, "-m", "harness.trial"],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=env, text=True,
                process_group=0,  # a terminal's Ctrl-C goes to the run, which decides
            )
            spec_text = json.dumps(asdict(spec))
        interruption.started(process)
        try:
            process.communicate(spec_text, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(process)
            timed_out = True
        except BaseException:
            kill_group(process)
            raise
        finally:
            process.wait()
            interruption.finished(process)
            # Whatever the trial started (a plugin's own processes) ends with it.
            # The group outlives its leader only while a member is alive, and
            # while it exists its id is not given to another process.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, timed_out


def judge_trial(spec: TrialSpec, returncode: int, timed_out: bool, timeout_s: float | None,
                stopped_by: int | None) -> TrialOutcome:
    """A finished trial's outcome from the files beside spec.events_path and its exit status
    (`stopped_by`: the signal that stopped the run, if one did); a Dask worker's trial alike."""
    outcome = TrialOutcome(spec.trial, spec.variant, spec.repeat, spec.params)
    if timed_out:
        outcome.status, outcome.error = "timeout", f"exceeded --timeout {timeout_s:g} s"
    _read_events(spec, outcome)
    if outcome.status == "timeout" and spec.measure_overhead and outcome.result:
        # The measured workload finished in time; only its --overhead re-runs did not.
        outcome.status, outcome.error = "ok", ""
        outcome.result["overhead_not_measured"] = f"the --overhead re-runs exceeded the trial's {timeout_s:g} s"
        return outcome
    if stopped_by is not None and returncode != 0 and outcome.status == "ok":
        # (a trial that had already failed keeps its own reason)
        outcome.status = "interrupted"
        outcome.error = f"stopped by {signal.Signals(stopped_by).name} to the run"
    elif outcome.status == "ok" and returncode != 0:
        if returncode < 0:
            outcome.status = "killed"
            outcome.error = f"killed by signal {-returncode}"
            if -returncode == signal.SIGKILL:
                outcome.error += " (SIGKILL: out of memory, or killed from outside)"
            elif -returncode == signal.SIGBUS:
                outcome.error += " (SIGBUS: no room for its sample file: is the disk full?)"
        else:
            outcome.status = "failed"
            log_path = Path(spec.events_path).with_suffix(".log")
            outcome.error = outcome.error or _last_line(log_path) or _silent_exit(returncode)
    if outcome.status == "ok" and not outcome.result:
        outcome.status, outcome.error = "failed", _silent_exit(returncode)
    return outcome


def _silent_exit(status: int) -> str:
    return (f"the trial process exited with status {status} before the workload finished, recording no "
            "error: the workload or engine ended it (os._exit, or a crash in native code)")


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_trials(
    specs: list[TrialSpec],
    config: RunConfig,
    progress: Callable[[TrialOutcome], None],
    interruption: Interruption | None = None,
    finished: Callable[[TrialSpec, TrialOutcome], None] = lambda spec, outcome: None,
    while_waiting: Callable[[], None] = lambda: None,
) -> list[TrialOutcome]:
    """Run the trials, `config.jobs` at once; `finished` sees each outcome in
    plan order, as soon as it and those before it are done. `while_waiting`
    runs once the first trials are under way (the run's own imports)."""
    interruption = interruption or Interruption()
    if config.executor == "dask":  # the same trials, each a task on the run's Dask cluster
        from harness import dask_executor

        return dask_executor.run_trials(specs, config, progress, interruption, finished)
    outcomes: dict[int, TrialOutcome] = {}
    timeout_s = trial_timeout(config, len(specs[0].probes) if specs else 0)
    # A fork server per interpreter the forked trials run under, all started at once.
    servers: dict[tuple[str | None, str | None], ForkServer] = {}
    for spec in specs:
        key = (spec.python, spec.pythonpath)
        if forkable(spec, config) and key not in servers:
            servers[key] = server_for(spec.python or sys.executable, trial_environment({}, spec.pythonpath))
    with ThreadPoolExecutor(max_workers=config.jobs) as pool:
        futures = [
            pool.submit(execute_trial, spec, timeout_s, config.trial_env, interruption,
                        servers.get((spec.python, spec.pythonpath)) if forkable(spec, config) else None)
            for spec in specs
        ]
        while_waiting()
        for spec, future in zip(specs, futures):
            outcome = future.result()
            outcomes[outcome.trial] = outcome
            progress(outcome)
            finished(spec, outcome)
    return [outcomes[spec.trial] for spec in specs]


def trial_timeout(config: RunConfig, probes: int) -> float | None:
    """How long a trial may take: --timeout for its measured workload and as
    much again for each --overhead re-run of it (they are workload runs too)."""
    if config.timeout_s is None or not config.measure_overhead:
        return config.timeout_s
    return min(MAX_TIMEOUT_S, config.timeout_s * (1 + overhead_reruns(probes)))


def start_meta(plan: Plan, run_dir: Path) -> dict[str, Any]:
    config = plan.config
    return {
        "experiment": plan.experiment.name,
        # Where the definition came from and what it declares: reading the run never imports it.
        "experiment_source": {"kind": plan.source.kind, "ref": plan.source.ref, "path": plan.source.path},
        "experiment_definition": describe(plan.experiment),
        "run_id": run_dir.name,
        "command": config.command or " ".join(sys.argv),
        "variants": plan.variants,
        "params": _param_values(plan),
        "repeats": config.repeats,
        "jobs": config.jobs,
        "probes": plan.probes,
        "timeout_s": config.timeout_s,
        "trial_env": dict(config.trial_env),
        "malloc_trim": config.malloc_trim,
        **({"interpreters": {minor: {"requested": found.requested, "path": found.path, "version": found.version,
                                     "gc_thresholds": list(found.gc_thresholds),
                                     "executable": plan.executables.get(minor, found.path),
                                     "packages": interpreters.packages(plan.executables.get(minor, found.path))}
                             for minor, found in plan.interpreters.items()}} if plan.interpreters else {}),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        **collect_metadata(),
    }


def _param_values(plan: Plan) -> dict[str, Any]:
    values: dict[str, list[Any]] = {}
    for params in plan.param_sets:
        for name, value in params.items():
            values.setdefault(name, [])
            if value not in values[name]:
                values[name].append(value)
    return {name: vals[0] if len(vals) == 1 else vals for name, vals in values.items()}


def progress_bar(total: int, label: str) -> tuple[Callable[[TrialOutcome], None], Callable[[], None]]:
    """Progress as the place the run is watched from can show it: a widget in a
    notebook (tqdm.auto), a bar on a terminal, and a line per finished trial
    where stderr is a log (CI), which a bar would fill with carriage returns."""
    from tqdm.auto import tqdm  # a notebook widget in Jupyter, text on a terminal

    notebook = any(base.__module__ == "tqdm.notebook" for base in tqdm.__mro__)  # what tqdm.auto chose
    if notebook or sys.stderr.isatty():
        bar = tqdm(total=total, desc=label, unit="trial", file=None if notebook else sys.stderr, leave=False,
                   disable=False)

        def advance(outcome: TrialOutcome) -> None:
            bar.set_postfix_str(f"{outcome.variant} r{outcome.repeat}: {outcome.status}")
            bar.update(1)

        return advance, bar.close

    started = time.monotonic()
    done = 0

    def log_line(outcome: TrialOutcome) -> None:
        nonlocal done
        done += 1
        print(f"{label}: trial {done}/{total} {outcome.variant} r{outcome.repeat}: {outcome.status} "
              f"({time.monotonic() - started:.1f} s)", file=sys.stderr, flush=True)

    return log_line, lambda: None


@dataclass
class RunResult:
    """A finished run: where it was written, its metadata, tables and checks."""

    path: Path
    meta: dict[str, Any]
    tables: dict[str, Any]
    checks: list[Any]
    interrupted_by: int | None = None  # the signal that stopped the run

    @property
    def ok(self) -> bool:
        return self.meta["status"] == "ok"


def guard_memory(plan: Plan, models: dict[str, Any] | None = None) -> GuardReport:
    copies = plan.config.repeats * (2 if plan.config.verify_observer else 1)  # repeats, blind twins
    needs = trial_needs(plan.experiment, plan.variants, plan.param_sets, copies=copies,
                        models={v: c.variant for v, c in (models or {}).items()})
    if plan.config.executor == "dask":  # judged against the workers' memory, not this machine's
        from harness import dask_executor

        return dask_executor.guard_memory(needs, plan.config.force)
    return check_memory(needs, plan.config.jobs, plan.config.force)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_experiment(
    config: RunConfig, show_progress: bool = True, notify: Callable[[str], None] = _stderr
) -> RunResult:
    if config.executor == "dask":  # the cluster lives as long as the run (harness.dask_executor)
        from harness import dask_executor

        with dask_executor.cluster_for_run(config, notify):
            return _run_experiment(config, show_progress, notify)
    return _run_experiment(config, show_progress, notify)


def _run_experiment(config: RunConfig, show_progress: bool, notify: Callable[[str], None]) -> RunResult:
    from harness.results import new_run_dir, write_json

    plan = make_plan(config)
    for note in plan.notes:
        notify(note)
    plan.prepare_interpreters(notify)
    # The model each variant's trials are judged by; a user's engine is examined now (harness.inference).
    models = choose_all(plan.variants, config.timeout_s)
    guard = guard_memory(plan, models)  # refuses before anything is written
    if guard.without_estimate:
        notify(f"memory guard: the model makes no estimate for {', '.join(guard.without_estimate)}; "
               "those trials are not checked")
    if guard.memory_limit_bytes is not None:
        notify(f"memory guard: forced; each trial runs under a {guard.memory_limit_bytes:,} byte address-space limit")
    for variant, choice in models.items():
        if choice.source == INFERRED:
            notify(f"{variant}: judged by {choice.variant}'s model, inferred by explain: {choice.reason}")
        elif choice.source is None and is_plugin(variant):
            notify(f"{variant}: no model ({choice.reason}); its trials are measured, not checked")
    # From the moment the run directory exists a signal is the run's to handle:
    # a Ctrl-C while meta.json is being written leaves a run recorded as
    # interrupted, not a directory without one. A second signal while the
    # results are written is absorbed: the files are written atomically and
    # quickly, and stopping half-way would lose them.
    with Interruption().handling_signals() as interruption:
        run_dir = new_run_dir(Path(config.out), plan.experiment.name)
        meta = start_meta(plan, run_dir)
        meta["memory_guard"] = guard.as_meta()
        meta["models"] = {variant: choice.columns() for variant, choice in models.items()}
        if config.executor == "dask":  # the scheduler and its workers, as the guard found them
            from harness.dask_executor import cluster_meta

            meta["cluster"] = cluster_meta()
        try:
            write_json(run_dir / "meta.json", meta)
            record_definition(run_dir, plan.experiment, plan.source, config.command)
        except OSError as error:  # a full disk before anything ran: leave no empty run directory
            shutil.rmtree(run_dir, ignore_errors=True)
            raise OSError(error.errno, f"cannot write {run_dir / 'meta.json'} ({error.strerror}); "
                          "nothing was run") from None
        specs = plan.specs(run_dir, guard.memory_limit_bytes)
        if show_progress:
            advance, close = progress_bar(len(specs), plan.experiment.name)
        else:
            advance, close = (lambda outcome: None), (lambda: None)
        writer = RunTableWriter(run_dir, plan.experiment, plan.probes, models=models)

        def write(spec: TrialSpec, outcome: TrialOutcome) -> None:
            if not spec.blind:  # a blind twin read nothing to tabulate
                writer.add(outcome)

        try:
            outcomes = run_trials(specs, config, advance, interruption, write,
                                  while_waiting=lambda: _import_writers(config.plots))
        except BaseException as error:  # a fault of the run itself: say so in meta.json if we can
            _record_failure(run_dir, meta, writer, f"{type(error).__name__}: {error}")
            raise
        finally:
            close()

        try:
            return _write_results(plan, config, specs, outcomes, run_dir, meta, interruption, notify, writer)
        except OSError as error:  # a full disk: say so wherever it can still be written
            failure = ResultsNotWritten(error, writer.summary())
            _record_failure(run_dir, meta, writer, str(failure))
            raise failure from None
        except Exception as error:  # a fault of the harness itself: meta.json must not say "running"
            _record_failure(run_dir, meta, writer, f"writing the results failed: {type(error).__name__}: {error}")
            raise


# A run's status, in meta.json, on the terminal, from `show` and in the report:
# what went wrong first. `run` exits 0 only on "ok"; `check` recomputes the
# checks and gives the same verdict.
RUN_STATUSES = {
    "ok": "every trial ran and every check held",
    "checks_failed": "every trial ran; a check failed",
    "failed": "a trial failed, was killed or timed out",
    "interrupted": "the run was stopped by a signal before every trial had run",
}


def run_status(interrupted: bool, trial_failed: bool, check_failed: bool) -> str:
    if interrupted:
        return "interrupted"
    if trial_failed:
        return "failed"
    return "checks_failed" if check_failed else "ok"


def _record_failure(run_dir: Path, meta: dict[str, Any], writer: RunTableWriter, error: str) -> None:
    """The run failed: no streamed table is left half-made, and meta.json says
    why wherever it can still be written (a full disk may refuse even that)."""
    from harness.results import write_json

    writer.discard()
    meta.update(status="failed", error=error, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    with contextlib.suppress(OSError):
        write_json(run_dir / "meta.json", meta)


def _peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _import_writers(plots: bool) -> None:
    """What writing the results needs (matplotlib is the bulk): imported while
    the trials run, in other processes, rather than after them."""
    import harness.check  # noqa: F401
    import harness.observer  # noqa: F401
    import harness.report  # noqa: F401

    if plots:
        import harness.plots  # noqa: F401


def _write_results(plan: Plan, config: RunConfig, specs: list[TrialSpec], outcomes: list[TrialOutcome],
                   run_dir: Path, meta: dict[str, Any], interruption: Interruption,
                   notify: Callable[[str], None], writer: RunTableWriter) -> RunResult:
    from harness.check import check_summary
    from harness.observer import compare_with_reference, observer_table
    from harness.plots import provenance, write_plots
    from harness.report import write_report
    from harness.results import RunTables, read_table, write_json, write_table

    measured = [o for o, spec in zip(outcomes, specs) if not spec.blind]
    twins = {o.trial - len(measured): o for o, spec in zip(outcomes, specs) if spec.blind}
    outcomes = measured
    rows = writer.commit()  # the streamed tables into place (raises what a write hit)
    small = {"records": pd.DataFrame(writer.records), "summary": writer.summary()}
    if not len(small["records"]):
        small["records"] = pd.DataFrame(columns=list(IDENTITY) + [p.name for p in plan.experiment.params]
                                        + ["iteration"])
    checks: list[Any] = []
    if config.verify_observer:
        findings = [f for o in outcomes for f in compare_with_reference(o, twins.get(o.trial))]
        small["observer"] = observer_table(findings)
        checks += findings
    for name, table in small.items():
        write_table(run_dir / f"{name}.csv", table)
        rows[name] = len(table)
    # Judged as read back: `harness check RUN` later sees exactly this table.
    summary = read_table(run_dir, "summary")
    checks += check_summary(plan.experiment, summary)
    write_table(run_dir / CHECKS_FILE, checks_table(checks))  # what `check` reads for a definition it won't import
    for outcome in outcomes:
        foreign = outcome.result.get("foreign_tracemalloc_domains")
        if foreign:
            notify(f"trial {outcome.trial} {outcome.variant}: its numpy_bytes include "
                   f"{sum(foreign.values()):,} bytes the engine traced in tracemalloc domain(s) "
                   f"{', '.join(foreign)}, not numpy's")
        if outcome.result.get("overhead_not_measured"):
            notify(f"trial {outcome.trial} {outcome.variant}: no overhead figures: "
                   f"{outcome.result['overhead_not_measured']}; its measurement is kept")
    meta["trial_pythons"] = sorted({o.start["python"] for o in outcomes if o.start.get("python")})
    # "forked" or "cold" (harness.fork_server): a forked trial's RSS lacks pages its server mapped
    meta["trial_starts"] = sorted({o.start["started"] for o in outcomes if o.start.get("started")})
    if plan.experiment.recorded_figures is not None:  # the workload's own summary columns, for views of it
        meta["recorded_figures"] = [c for c in summary.columns if c in set().union(
            *(plan.experiment.recorded_figures(o.records) for o in outcomes))]
    if config.plots and not any(o.status == "interrupted" for o in outcomes):
        drawn = {**writer.tables_for_plots(), "summary": summary}
        meta["plots"] = [p.name for p in write_plots(run_dir, plan.experiment, drawn, provenance(meta))]
    failed = [o for o in outcomes if o.status != "ok"]
    # A signal that came after every trial had finished cost nothing: the run is
    # complete. A blind twin it stopped leaves its check undone: not complete.
    stopped = (interruption.signum if any(o.status == "interrupted" for o in [*outcomes, *twins.values()])
               else None)
    status = run_status(stopped is not None, bool(failed), any(not c.passed for c in checks))
    meta.update(
        status=status,
        interrupted_by=None if stopped is None else signal.Signals(stopped).name,
        failed_trials=[{"trial": o.trial, "variant": o.variant, "status": o.status, "error": o.error}
                       for o in failed],
        checks_passed=sum(c.passed for c in checks),
        checks_failed=sum(not c.passed for c in checks),
        trial_gc_thresholds=sorted({tuple(o.start.get("gc_thresholds", ())) for o in outcomes if o.start}),
        tables={name: {"rows": n} for name, n in rows.items()},
        # The run's own process: independent of how many iterations the trials ran.
        parent_peak_rss_bytes=_peak_rss_bytes(),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    try:  # the run's data is all on disk by now: a page that cannot be drawn loses nothing
        meta["report"] = write_report(run_dir, meta, checks=checks).name
    except Exception as error:  # noqa: BLE001 - said, and rebuildable with `harness report RUN`
        notify(f"report.html not written: {type(error).__name__}: {error}")
    write_json(run_dir / "meta.json", meta)
    return RunResult(run_dir, meta, RunTables(run_dir, {"summary": summary, **({"observer": small["observer"]}
                                                                                if "observer" in small else {})}),
                     checks, stopped)
