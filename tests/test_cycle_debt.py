"""Cycle debt: the numpy bytes only unreachable cycles hold, measured at every
sample point in a forked copy (harness.probes.cycle_debt), exact; the trial's
own collector is untouched (tests/test_observer.py runs the probe against a
blind twin)."""
from __future__ import annotations

import gc
from pathlib import Path

import harness
from harness.model import chain_bytes

PROBES = ["tracemalloc", "gc", "cycle_debt"]
ITERATIONS = round(300 * gc.get_threshold()[0] / 700)  # collections on any interpreter


def test_strongref_with_the_gc_off_owes_every_graph_but_the_one_in_use(tmp_path: Path) -> None:
    run = harness.run("exp17", params={"gc": "off", "iterations": 20}, out=tmp_path, probes=PROBES, plots=False,
                      progress=False)
    graph = chain_bytes(10_000, 3)
    samples = run.samples
    strong = samples[(samples["variant"] == "strongref") & (samples["phase"] == "end")]
    assert strong["cycle_debt_bytes"].tolist() == [k * graph for k in range(20)]  # at every sample point
    for variant in ("weakref", "no_grad"):
        assert set(samples.loc[samples["variant"] == variant, "cycle_debt_bytes"]) == {0}
    summary = run.summary.set_index("variant")
    assert summary.loc["strongref", "cycle_debt_final_bytes"] == summary.loc["strongref", "cycle_debt_peak_bytes"] \
        == 19 * graph
    checks = [c for c in run.checks() if "cycle_debt" in c.expectation.metric]
    assert len(checks) == 6 and all(c.passed for c in checks)


def test_with_the_gc_on_all_that_is_held_is_the_graph_in_use_and_the_debt(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["strongref"], params={"iterations": ITERATIONS}, out=tmp_path,
                      probes=PROBES, plots=False, progress=False)
    ends = run.samples[run.samples["phase"] == "end"]
    graph = chain_bytes(10_000, 3)
    assert ((ends["numpy_bytes"] - ends["cycle_debt_bytes"]) == graph).all()
    assert run.summary.loc[0, "gc_collections"] >= 1  # the debt was paid down along the way
    assert all(c.passed for c in run.checks())


def test_exp16_owes_everything_once_the_loop_returns_and_nothing_after_the_census(tmp_path: Path) -> None:
    run = harness.run("exp16", out=tmp_path, probes=[*PROBES, "census"], plots=False, progress=False)
    samples = run.samples.set_index(["variant", "phase"])
    assert samples.loc[("strongref", "dropped"), "cycle_debt_bytes"] == 10 * chain_bytes(10_000, 3)
    assert samples.loc[("strongref", "census"), "cycle_debt_bytes"] == 0
    assert samples.loc[("weakref", "dropped"), "cycle_debt_bytes"] == 0
    assert all(c.passed for c in run.checks())
