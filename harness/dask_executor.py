"""Trials on a Dask cluster: `harness run EXP --executor dask [--scheduler tcp://HOST:PORT]`.

Why Dask: a sweep of independent trials outgrows one machine, and Dask
distributed already does everything spreading them needs -- a scheduler,
workers started by hand (dask-scheduler, dask-worker), on Kubernetes or
under SLURM (dask-jobqueue), placement, and noticing a worker that died.
The harness schedules nothing itself: each trial is one task, submitted
when a worker thread is free for it. Without --scheduler the run starts a
LocalCluster here (`--jobs` worker processes, one thread each) and closes
it when the run ends.

What isolation holds: the task starts the same fresh `python -m
harness.trial` process a local run starts (its own process group, the same
TrialSpec, dying with the process that started it), in a scratch directory
on the worker; the worker's own interpreter measures nothing. When the
trial ends, the task sends back the bytes of every file it wrote (event log,
sample and phase files, its output), the run writes them into the run
directory under the same names and reads them exactly as a local trial's
(`harness.runner.judge_trial`): the same tables. The exact figures --
numpy bytes, the collector's counts, live objects -- depend on the trial's
interpreter and libraries, not on the machine, so each trial records its
worker's host, memory limit and versions beside them. The environment
variables a Dask nanny sets for its own worker (MALLOC_TRIM_THRESHOLD_,
OMP_NUM_THREADS, ...) are not passed on: a trial's allocator is set as on a
local run (set them with --env to measure under them).

What does not hold: trials that run at once on one worker's machine share
its memory bandwidth, caches and allocator pressure, so their RSS and time
figures are noisier than one trial per machine: for those, run workers with
one thread (one trial at a time each). A worker's memory_limit bounds what
Dask lets the worker's own process hold, not its trials (child processes):
the memory guard judges the plan against each worker's memory_limit instead.

Faults: a worker that dies mid-trial takes its trial with it; the scheduler
does not run that task again (allowed-failures 0 on a cluster the run
starts; an external scheduler's setting is recorded, and a re-run it makes
is said and recorded), the trial is recorded failed, naming the worker, and
the run goes on. Ctrl-C on the client stops the running trials on their
workers (their files come back: nothing measured is lost), submits no
more, and closes a cluster the run started.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import platform
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import UsageError
from harness.guard import GuardReport, TrialNeed, check_memory, human_bytes
from harness.meta import trial_environment
from harness.runner import (
    Interruption,
    RunConfig,
    judge_trial,
    not_started,
    run_trial_process,
    trial_timeout,
)
from harness.tables import TrialOutcome
from harness.trial import TrialSpec

INSTALL_HINT = 'pip install -e ".[dask]"'
CONNECT_TIMEOUT_S = 10  # an unreachable --scheduler is refused after this long
WORKERS_TIMEOUT_S = 30  # a scheduler with no worker yet: wait this long for one
STOP_GRACE_S = 30  # after Ctrl-C: how long stopped trials have to send back what they measured
POLL_S = 0.2  # how often the run looks for a signal while it waits for a trial

_CLUSTER: contextvars.ContextVar["Cluster | None"] = contextvars.ContextVar("harness_dask_cluster", default=None)


def _distributed() -> Any:
    """Dask distributed, imported only when a run asks for it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--executor dask needs Dask distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


def check_address(address: str) -> str:
    """A scheduler address as Dask takes it: PROTOCOL://HOST:PORT (one line and exit 2 if not)."""
    from distributed.comm.registry import backends

    scheme, sep, location = str(address).partition("://")
    host, colon, port = location.rpartition(":")
    if not (isinstance(address, str) and sep and scheme in backends and host and colon and port.isdigit()
            and 0 < int(port) < 65536):
        raise UsageError(f"--scheduler takes a Dask scheduler's address, PROTOCOL://HOST:PORT such as "
                         f"tcp://10.0.0.5:8786 (protocols: {', '.join(sorted(backends))}), got {address!r}")
    return address


class Cluster:
    """The Dask cluster a run's trials go to: connected when first used (so bad input is
    refused before anything starts), closed -- with the LocalCluster it started -- at the end."""

    def __init__(self, scheduler: str | None, n_workers: int, notify: Callable[[str], None]) -> None:
        self.scheduler, self.n_workers, self.notify = scheduler, n_workers, notify
        self._client: Any = None
        self._local: Any = None
        self.allowed_failures = 0
        self.workers: dict[str, dict[str, Any]] = {}  # address -> _worker_facts, as the guard found them

    def client(self) -> Any:
        if self._client is None:
            self._connect()
        return self._client

    def _connect(self) -> None:
        distributed = _distributed()
        import dask

        if self.scheduler is None:
            # A trial whose worker died is not run again: it is recorded failed.
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._local = distributed.LocalCluster(n_workers=self.n_workers, threads_per_worker=1,
                                                       processes=True, dashboard_address=None,
                                                       silence_logs=logging.ERROR)
            self._client = distributed.Client(self._local)
            # Its workers share this terminal's process group; its Ctrl-C is the run's to handle.
            self._client.register_plugin(_terminal_signals_plugin(), name="harness-terminal-signals")
        else:
            try:
                self._client = distributed.Client(self.scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as error:
                reason = str(error).splitlines()[0] if str(error) else "no answer"
                raise UsageError(f"--scheduler {self.scheduler}: cannot reach a Dask scheduler there "
                                 f"({type(error).__name__}: {reason})") from None
        # (a lambda goes by value: the scheduler needs nothing of this project installed)
        self.allowed_failures = int(self._client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.allowed_failures))
        if self.allowed_failures:
            self.notify(f"dask: this scheduler runs a task again when its worker dies, up to "
                        f"{self.allowed_failures} times (distributed.scheduler.allowed-failures): such a trial "
                        "is said and recorded (worker_reruns); set it to 0 to record the death instead")

    def find_workers(self) -> dict[str, dict[str, Any]]:
        """Each worker's host, memory limit, threads and versions (and its host's available memory)."""
        client = self.client()
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise UsageError(f"the Dask scheduler at {self.address} has no worker after {WORKERS_TIMEOUT_S} s; "
                             "start one (dask worker ADDRESS) and run again") from None
        self.workers = client.run(_worker_facts, on_error="ignore")
        return self.workers

    @property
    def address(self) -> str:
        return self.scheduler or (self._client.scheduler.address if self._client is not None else "")

    def meta(self) -> dict[str, Any]:
        import distributed

        return {"executor": "dask", "scheduler": self.address, "started_by_run": self.scheduler is None,
                "distributed": distributed.__version__, "allowed_failures": self.allowed_failures,
                "workers": self.workers}

    def close(self) -> None:
        for closable in (self._client, self._local):
            if closable is not None:
                with contextlib.suppress(Exception):  # closing what may already be gone
                    closable.close()
        self._client = self._local = None


@contextlib.contextmanager
def cluster_for_run(config: RunConfig, notify: Callable[[str], None]) -> Iterator[Cluster]:
    """The run's cluster, for `guard_memory` and `run_trials` to find; closed when the run ends."""
    _distributed()
    if config.scheduler is not None:
        check_address(config.scheduler)
    cluster = Cluster(config.scheduler, config.jobs, notify)
    token = _CLUSTER.set(cluster)
    try:
        yield cluster
    finally:
        _CLUSTER.reset(token)
        cluster.close()


def _current() -> Cluster:
    cluster = _CLUSTER.get()
    if cluster is None:
        raise RuntimeError("no Dask cluster: run with harness.runner.run_experiment(executor='dask')")
    return cluster


def cluster_meta() -> dict[str, Any]:
    return _current().meta()


def guard_memory(needs: list[TrialNeed], force: bool) -> GuardReport:
    """Every worker must hold the trials it runs at once (its threads): judged against its
    memory_limit (a worker with none: its host's available memory), smallest first; the
    report is the smallest worker's. The run's own machine only gathers the files."""
    cluster = _current()
    workers = sorted(cluster.find_workers().items(), key=lambda item: _memory_of(item[1]))
    reports = []
    for address, facts in workers:
        try:
            reports.append(check_memory(needs, facts["worker_nthreads"], force,
                                        available_bytes=_memory_of(facts), count_parent=False))
        except UsageError as error:
            limit = facts["worker_memory_limit_bytes"]
            basis = f"memory_limit {human_bytes(limit)}" if limit else "no memory_limit: its host's available memory"
            raise UsageError(f"{error} (judged against Dask worker {address} on {facts['worker']}, "
                             f"{facts['worker_nthreads']} thread(s), {basis})") from None
    return reports[0]


def _memory_of(facts: dict[str, Any]) -> int:
    return facts["worker_memory_limit_bytes"] or facts["worker_available_bytes"]


def run_trials(specs: list[TrialSpec], config: RunConfig, progress: Callable[[TrialOutcome], None],
               interruption: Interruption, finished: Callable[[TrialSpec, TrialOutcome], None]) -> list[TrialOutcome]:
    """`harness.runner.run_trials` on the cluster. A trial is submitted when a worker thread
    is free for it, so none waits in a worker's queue (where that worker's death would take
    it too); `finished` sees each outcome in plan order, as soon as it and those before it are in."""
    distributed = _distributed()
    cluster = _current()
    client = cluster.client()
    timeout_s = trial_timeout(config, len(specs[0].probes) if specs else 0)
    run_token = uuid.uuid4().hex  # names this run's trials on the workers, for a stop
    threads = _Threads(client)
    futures: list[Any] = []  # the trials submitted so far, in plan order
    outcomes: list[TrialOutcome] = []
    stop_deadline: float | None = None
    try:
        for n, spec in enumerate(specs):
            while True:
                if interruption.signum is not None and stop_deadline is None:
                    stop_deadline = time.monotonic() + STOP_GRACE_S
                    _stop_on_workers(client, run_token, interruption.signum)
                running = [f for f in futures if not f.done()]
                if stop_deadline is None:
                    for later in specs[len(futures):len(futures) + max(0, threads() - len(running))]:
                        futures.append(client.submit(run_on_worker, later, timeout_s, dict(config.trial_env),
                                                     run_token, key=f"harness-trial-{later.trial:05d}-{run_token}",
                                                     pure=False))
                        running.append(futures[-1])
                if n < len(futures) and futures[n].done():
                    break
                if n >= len(futures) and stop_deadline is not None:
                    break  # never submitted: the run was stopped first
                if stop_deadline is not None and time.monotonic() > stop_deadline:
                    futures[n].cancel()
                    break
                if running:
                    with contextlib.suppress(TimeoutError):
                        distributed.wait(running, timeout=POLL_S, return_when="FIRST_COMPLETED")
                else:  # no worker thread yet (a worker that died is being restarted)
                    time.sleep(POLL_S)
            if n < len(futures):
                outcome = _outcome(spec, futures[n], timeout_s, interruption, cluster)
                futures[n].release()  # its files are on disk now: the worker may forget them
            else:
                outcome = not_started(spec, interruption.signum)
            outcomes.append(outcome)
            progress(outcome)
            finished(spec, outcome)
    except BaseException:
        _stop_on_workers(client, run_token, interruption.signum or signal.SIGINT)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.cancel([f for f in futures if not f.done()], force=True)
            client.run(_forget_run, run_token, on_error="ignore")
    return outcomes


class _Threads:
    """The cluster's worker threads: how many trials may run at once (asked again every few
    seconds, so workers that join or leave count)."""

    REFRESH_S = 2.0

    def __init__(self, client: Any) -> None:
        self._client, self._count, self._asked = client, 0, -math.inf

    def __call__(self) -> int:
        if time.monotonic() - self._asked > self.REFRESH_S:
            with contextlib.suppress(Exception):  # the scheduler's answer may be late: keep the last
                self._count = sum(self._client.nthreads().values())
                self._asked = time.monotonic()
        return self._count


def _stop_on_workers(client: Any, run_token: str, signum: int) -> None:
    """Stop the run's trials on every worker: running ones are killed (what they wrote still
    comes back), and none starts after."""
    with contextlib.suppress(Exception):  # a worker that is gone has nothing to stop
        client.run(_stop_trials, run_token, int(signum), on_error="ignore")


def _outcome(spec: TrialSpec, future: Any, timeout_s: float | None, interruption: Interruption,
             cluster: Cluster) -> TrialOutcome:
    from distributed import KilledWorker

    signum = interruption.signum
    if future.cancelled():  # stopped, and its files did not come back in time
        return TrialOutcome(spec.trial, spec.variant, spec.repeat, spec.params, status="interrupted",
                            error=f"stopped by {signal.Signals(signum or signal.SIGINT).name} to the run; "
                                  f"its worker sent nothing back within {STOP_GRACE_S} s")
    try:
        returned = future.result()
    except KilledWorker as error:
        address = getattr(error.last_worker, "address", str(error.last_worker))
        host = cluster.workers.get(address, {}).get("worker", "")
        runs = int(getattr(error, "allowed_failures", 0)) + 1
        outcome = TrialOutcome(spec.trial, spec.variant, spec.repeat, spec.params, status="failed",
                               error=f"its Dask worker {address}{f' on {host}' if host else ''} died while running "
                                     "it (the trial dies with its worker); nothing it measured came back"
                                     + (f"; the scheduler ran it {runs} times, and each time its worker died"
                                        if runs > 1 else ""))
        outcome.worker = {"worker": host or None, "worker_address": address, "worker_reruns": runs - 1}
        return outcome
    except Exception as error:  # noqa: BLE001 - the task's own fault, or the cluster's: this trial's, said
        return TrialOutcome(spec.trial, spec.variant, spec.repeat, spec.params,
                            status="failed" if signum is None else "interrupted",
                            error=f"its Dask task failed: {type(error).__name__}: {error}")
    if not returned["started"]:
        return not_started(spec, signum or returned["stopped_by"] or signal.SIGINT)
    events_path = Path(spec.events_path)
    for name, data in returned["files"].items():  # under the names a local trial's files have
        (events_path.parent / name).write_bytes(data)
    outcome = judge_trial(spec, returned["returncode"], returned["timed_out"], timeout_s,
                          signum or returned["stopped_by"])
    outcome.worker = returned["worker"]
    if cluster.allowed_failures:
        key = future.key  # the times a worker holding it died (TaskState.suspicious)
        reruns = cluster.client().run_on_scheduler(
            lambda dask_scheduler: int(getattr(dask_scheduler.tasks.get(key), "suspicious", 0)))
        outcome.worker["worker_reruns"] = reruns
        if reruns:
            cluster.notify(f"trial {spec.trial} {spec.variant}: the scheduler ran it again after {reruns} "
                           "worker(s) holding it died; these are the figures of the run that finished")
    return outcome


# -- on the worker ------------------------------------------------------------------

_RUNS: dict[str, Interruption] = {}  # each run's trials on this worker, by run token
_RUNS_LOCK = threading.Lock()


def _run_interruption(run_token: str) -> Interruption:
    with _RUNS_LOCK:
        return _RUNS.setdefault(run_token, Interruption())


def _stop_trials(run_token: str, signum: int) -> None:
    _run_interruption(run_token).stop(signum)  # kills the running trials' groups; none starts after


def _forget_run(run_token: str) -> None:
    with _RUNS_LOCK:
        _RUNS.pop(run_token, None)


def run_on_worker(spec: TrialSpec, timeout_s: float | None, env: dict[str, str], run_token: str) -> dict[str, Any]:
    """The Dask task: one trial in a fresh process on this worker, in a scratch directory;
    returns its exit, and every file it wrote as bytes by name."""
    from distributed import get_worker

    worker = get_worker()
    facts = _trial_facts(_worker_facts(worker))
    interruption = _run_interruption(run_token)
    if interruption.signum is not None:
        return {"started": False, "stopped_by": interruption.signum, "worker": facts}
    scratch = Path(tempfile.mkdtemp(prefix=f"harness-trial-{spec.trial:05d}-", dir=worker.local_directory))
    try:
        here = replace(spec, events_path=str(scratch / Path(spec.events_path).name), parent_pid=os.getpid())
        returncode, timed_out = run_trial_process(here, timeout_s, _worker_trial_env(env, spec), interruption)
        files = {path.name: path.read_bytes() for path in sorted(scratch.iterdir()) if path.is_file()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"started": True, "returncode": returncode, "timed_out": timed_out, "files": files,
            "stopped_by": interruption.signum, "worker": facts}


def _worker_trial_env(extra: dict[str, str], spec: TrialSpec) -> dict[str, str]:
    """A local run's trial environment, without what the nanny set for its worker alone."""
    import dask

    nanny_set = {key: str(value) for key, value in
                 (dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}).items()}
    env = trial_environment(extra, spec.pythonpath)
    return {key: value for key, value in env.items()
            if key in extra or nanny_set.get(key) != value}


def _worker_facts(dask_worker: Any) -> dict[str, Any]:
    """Run on a worker (`Client.run` passes `dask_worker`), and by each task for its trial."""
    import numpy
    import psutil

    return {"worker": socket.gethostname(), "worker_address": dask_worker.address,
            "worker_memory_limit_bytes": dask_worker.memory_manager.memory_limit or None,
            "worker_nthreads": dask_worker.state.nthreads,
            "worker_python": platform.python_version(), "worker_numpy": numpy.__version__,
            "worker_available_bytes": psutil.virtual_memory().available}


def _trial_facts(facts: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in facts.items() if key != "worker_available_bytes"}


def _terminal_signals_plugin() -> Any:
    """A worker plugin: the LocalCluster's workers ignore the terminal's SIGINT and SIGHUP,
    which reach its whole process group, so the run, not the signal, decides when they stop."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class TerminalSignalsToTheRun(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            with contextlib.suppress(ValueError):  # not the worker's main thread: nothing to set
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

    return TerminalSignalsToTheRun()
