"""The observer never moves what it observes.

For several workloads and parameter sets, with the GC on, every probe set
(each probe alone, all of them, the gc recorder alone) gives the same
collector trace at every sample point -- so every collection falls in the
same iteration -- and, when the workload returns, the same collections,
collected objects, counts and numpy-domain bytes as a blind twin in which
no sample point reads anything (the workload driven with no probe at all).
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import harness
from harness.registry import get_experiment
from harness.runner import execute_trial
from harness.tables import TrialOutcome
from harness.trial import TrialSpec

ROOT = Path(__file__).resolve().parent.parent
ALL_PROBES = ["tracemalloc", "rss", "gc", "census", "sampled"]
PROBE_SETS = {
    "gc alone": ["gc"],
    "all probes": ALL_PROBES,
    "uss and gc": ["uss", "gc"],
    **{f"{name} with gc": [name, "gc"] for name in ("tracemalloc", "rss", "census", "sampled", "cycle_debt")},
    # without the gc recorder there is no trace, only the end readings
    **{f"{name} alone": [name] for name in ("tracemalloc", "rss", "census")},
}
# (experiment, variant, parameters): the seeds' loops, long enough for the
# collector to run, one with gen-1 collections, one with backward passes.
# Lengths are for gen-0's threshold of 700 (3.11, 3.12), scaled to the
# interpreter's (2000 on 3.13) so the collector runs as often.
SCALE = gc.get_threshold()[0] / 700
WORKLOADS = [
    ("exp17", "strongref", {"iterations": round(300 * SCALE)}),
    ("exp17", "strongref", {"iterations": round(120 * SCALE), "size": 100, "depth": 1}),
    ("exp17_sweep", "strongref", {"iterations": round(200 * SCALE), "size": 10_000, "depth": 9}),
    ("exp18_retain_grad", "strongref", {"iterations": round(120 * SCALE)}),
    ("exp16", "strongref", {}),
]


def end_readings(outcome: TrialOutcome) -> dict:
    """What the trial read when the workload returned: the collector's work
    during the workload, its counts then, and the numpy bytes."""
    start, end = outcome.result["gc_at_start"], outcome.result["gc_at_end"]
    return {
        **{key: [e - s for s, e in zip(start[key], end[key])] for key in ("collections", "collected", "uncollectable")},
        "count": end["count"],
        "numpy_bytes_at_end": outcome.result["numpy_bytes_at_end"],
        "numpy_bytes_peak_overall": outcome.result["numpy_bytes_peak_overall"],
    }


def _trial(tmp_path: Path, experiment: str, variant: str, params: dict, probes: list[str],
           blind: bool = False, label: str = "") -> TrialOutcome:
    defaults = get_experiment(experiment).defaults()
    spec = TrialSpec(
        trial=0, experiment=experiment, variant=variant, params={**defaults, "gc": "on", **params},
        repeat=0, seed=0, probes=probes, blind=blind,
        events_path=str(tmp_path / f"{label or '-'.join(probes) or 'none'}{'-blind' if blind else ''}.jsonl"),
    )
    outcome = execute_trial(spec, timeout_s=120, env={})
    assert outcome.status == "ok", outcome.error
    return outcome


def _gc_trace(outcome: TrialOutcome) -> pd.DataFrame:
    samples = outcome.samples()
    trace = samples[["iteration", "phase"] + [c for c in samples.columns if c.startswith("gc_count")]].copy()
    for column in [c for c in samples.columns if c.startswith("gc_total")]:
        # totals since the start sample (a probe's own setup may collect before it)
        trace[column] = samples[column] - samples[column].iloc[0]
    return trace.reset_index(drop=True)


@pytest.mark.parametrize("experiment, variant, params", WORKLOADS,
                         ids=[f"{e}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'defaults'}" for e, _, p in WORKLOADS])
def test_every_probe_set_sees_the_gc_the_blind_workload_has(tmp_path: Path, experiment: str, variant: str,
                                                            params: dict) -> None:
    blind = _trial(tmp_path, experiment, variant, params, [], blind=True)
    assert sum(end_readings(blind)["collections"]) > 0, "the collector must run, or there is nothing to move"
    reference = _trial(tmp_path, experiment, variant, params, ["gc"])
    reference_trace = _gc_trace(reference)
    assert len(reference_trace) > 10
    for label, probes in PROBE_SETS.items():
        outcome = reference if probes == ["gc"] else _trial(tmp_path, experiment, variant, params, probes)
        assert end_readings(outcome) == end_readings(blind), label
        assert outcome.result["drifted_sample_points"] == 0, label
        if "gc" in probes:  # the collector's state at every sample point
            pd.testing.assert_frame_equal(_gc_trace(outcome), reference_trace, obj=label)


def test_the_start_state_is_all_counts_zero_and_gc_off_records_no_collection(tmp_path: Path) -> None:
    outcome = _trial(tmp_path, "exp17", "strongref", {"iterations": 100, "gc": "off"}, ALL_PROBES)
    start = outcome.samples().iloc[0]
    # gc.collect() then gc.freeze(): nothing young, every generation's count 0,
    # and the start sample leaves it so.
    assert (start.phase, start.gc_count_gen0, start.gc_count_gen1, start.gc_count_gen2) == ("start", 0, 0, 0)
    assert outcome.result["gc_at_end"]["collections"] == outcome.result["gc_at_start"]["collections"]


def test_gc_off_run_reports_no_collection_and_gc_columns_are_empty_without_the_gc_probe(tmp_path: Path) -> None:
    off = harness.run("exp17", variants=["strongref"], params={"gc": "off", "iterations": 100}, out=tmp_path,
                      plots=False, progress=False)
    assert off.summary.loc[0, "gc_collections"] == 0
    assert off.gc_events.empty
    only_bytes = harness.run("exp17", variants=["strongref"], params={"iterations": 300}, out=tmp_path,
                             plots=False, progress=False, probes=["tracemalloc"])
    row = only_bytes.summary.iloc[0]
    for column in ("gc_collections", "gc_collections_gen0", "gc_collected_objects", "gc_uncollectable"):
        assert pd.isna(row[column]), column  # not measured: empty, not 0
    assert only_bytes.samples["gc_count_gen0"].isna().all()
    assert row["numpy_bytes_final"] > 0


def test_verify_observer_passes_and_is_recorded_for_check(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["strongref", "weakref"], params={"iterations": 100}, out=tmp_path,
                      plots=False, progress=False, verify_observer=True)
    observer = pd.read_csv(run.path / "observer.csv")
    assert observer.passed.all() and set(observer.variant) == {"strongref", "weakref"}
    assert "collections by generation" in set(observer.figure)
    checks = [c for c in run.checks() if "observer" in c.line()]
    assert checks and all(c.passed for c in checks)
    assert len(run.summary) == 2  # the twins are not trials of the run


SLOPPY_PROBE = textwrap.dedent("""
    # A probe that keeps a list at every sample point, as a careless probe would.
    from harness.probes import rss

    _sample = rss.RssProbe.sample
    kept = []

    class Reading:  # an instance of a class: a new container every time
        pass

    def sample(self, row, at):
        kept.append(Reading())
        _sample(self, row, at)

    rss.RssProbe.sample = sample
""")


def test_verify_observer_fails_when_a_probe_moves_the_collector(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOPPY_PROBE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", "strongref", "--param", "iterations=100",
         "--probe", "rss", "--probe", "gc", "--no-plots", "--verify-observer", "--env", f"PYTHONPATH={site}",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL trial 0 strongref: observer -- sample points that changed gen-0's count 101" in done.stdout


def test_sample_points_allocate_no_container() -> None:
    """With the collector paused, two hundred sample points of every neutral
    probe leave gen-0's count where it was. (The free lists are empty when
    they start, so a container made by any sample point moves the count at
    once; `uss` and `census` read the whole process at every point, so more
    points would cost seconds and show nothing more.)"""
    code = textwrap.dedent(f"""
        import gc, sys
        sys.path.insert(0, {str(ROOT)!r})
        import harness.trial  # all a trial imports: logging among them, whose at-fork hooks os.fork would run
        from harness.probes import SAMPLE_PROBES, TrialState
        from harness.probes.gc_state import locate
        from harness.probes.numpy_domain import NumpyDomainTracer
        from harness.probes.sampler import Sampler
        from engine.variants import get_variant
        import numpy as np

        view, why = locate()
        tracer = NumpyDomainTracer()
        tracer.start()
        state = TrialState(get_variant("strongref").load(), gc_view=view, tracer=tracer)
        probes = [probe() for probe in SAMPLE_PROBES.values()]
        for probe in probes:
            probe.start(state)
        sampler = Sampler(None, probes, state)
        keep = [np.ones(3) for _ in range(10)]
        sampler.warm_up()
        sample = sampler.sample
        gc.disable()
        gc.collect()  # empties the free lists: a tuple made now would stay on one
        before = view.count[0].value
        for i in range(200):
            sample(i, "end")
        print(view.count[0].value - before, sampler.drifted_points, [p.name for p in probes if not p.neutral])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "[]"]


def test_numpy_totals_are_read_through_views_on_this_interpreter() -> None:
    from harness.probes.numpy_domain import NumpyDomainTracer

    tracer = NumpyDomainTracer()
    tracer.start()
    try:
        assert tracer.neutral
        a = np.empty(1_000)
        assert tracer.read() == (8_000, 8_000)
        del a
    finally:
        tracer.stop()


def test_a_long_trial_stays_neutral_past_one_chunk_of_its_sample_file(tmp_path: Path) -> None:
    """More sample points than the first mapping once held (16,384): the file is
    mapped for the trial's expected rows up front, so the sample path never
    maps again."""
    params = {"iterations": 20_000, "size": 10, "depth": 1}
    blind = _trial(tmp_path, "exp17", "strongref", params, [], blind=True)
    probed = _trial(tmp_path, "exp17", "strongref", params, ["tracemalloc", "rss", "gc", "census"])
    assert probed.result["samples"] == 20_001
    assert probed.result["drifted_sample_points"] == 0
    assert end_readings(probed) == end_readings(blind)


def _outcome(trial: int, status: str = "ok", **result) -> TrialOutcome:
    return TrialOutcome(trial, "strongref", 0, {}, status=status, error="" if status == "ok" else "boom",
                        result=result)


def test_nothing_judged_by_the_observer_check_is_a_failed_check() -> None:
    from harness.observer import compare_with_reference

    readable = {"observer": {"gc_state": True}, "gc_at_start": {"collections": [0, 0, 0], "collected": [0, 0, 0],
                                                               "uncollectable": [0, 0, 0]},
                "gc_at_end": {"count": [1, 0, 0], "collections": [1, 0, 0], "collected": [5, 0, 0],
                              "uncollectable": [0, 0, 0]}}
    twin_stopped = compare_with_reference(_outcome(0, **readable), _outcome(1, status="interrupted"))
    assert [(r.figure, r.passed) for r in twin_stopped] == [("the blind twin did not finish", False)]
    assert [r.passed for r in compare_with_reference(_outcome(0, **readable), None)] == [False]
    unreadable = compare_with_reference(_outcome(0, observer={"gc_state": False, "gc_state_unavailable": "no /proc"}),
                                        _outcome(1))
    assert [(r.figure, r.measured, r.passed) for r in unreadable] == [
        ("the collector's state could not be read", "no /proc", False)]
    assert all(r.passed for r in compare_with_reference(_outcome(0, **readable), _outcome(1, **readable)))


def test_gc_columns_the_collector_could_not_fill_are_not_measured() -> None:
    from harness.registry import get_experiment
    from harness.tables import summarize

    columns = ["iteration", "phase", "t_s", "gc_count_gen0", "gc_count_gen1", "gc_count_gen2",
               *[f"gc_total_{w}_gen{g}" for w in ("collections", "collected", "uncollectable") for g in range(3)]]
    outcome = _outcome(0, observer={"gc_state": False})
    outcome.probes, outcome.sample_columns, outcome.phases = ["gc"], columns, ["start", "end"]
    outcome.sample_rows = np.array([[-1, 0, 0.0] + [np.nan] * 12, [0, 1, 0.1] + [np.nan] * 12])
    outcome.params = get_experiment("exp17").defaults()
    row = summarize(get_experiment("exp17"), outcome)
    assert row["gc_collections"] is None and row["observer_neutral"] is None
