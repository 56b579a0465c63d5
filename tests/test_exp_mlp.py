"""exp_mlp: a two-layer MLP trained by SGD on the spiral data. Its loss falls
(a real training loop), the model of one step's bytes is exact with the GC
off across batch sizes and widths, and the same loop trains identically on
PyTorch and the official DeZero."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import harness
from experiments.exp_mlp import batch_sizes, expected, step_bytes
from harness.experiment import Params
from harness.registry import get_experiment

EXACT_PROBES = ["tracemalloc", "gc", "census"]


def small_run(tmp_path: Path, **kwargs) -> harness.Run:
    return harness.run("exp_mlp", out=tmp_path, plots=False, progress=False, **kwargs)


def test_every_variant_holds_what_the_model_says_and_the_loss_falls(tmp_path: Path) -> None:
    run = small_run(tmp_path, params={"gc": "off", "epochs": 3})
    assert run.meta["status"] == "ok", [c.line() for c in run.checks() if not c.passed]
    summary = run.summary.set_index("variant")
    assert (summary["numpy_bytes_final"] == summary["expected_numpy_bytes_final"]).all()
    # weakref keeps every grad, retain_grad only the leaves', no_grad keeps no graph at all
    assert summary.loc["strongref", "numpy_bytes_final"] > summary.loc["weakref", "numpy_bytes_final"] \
        > summary.loc["retain_grad", "numpy_bytes_final"] > summary.loc["no_grad", "numpy_bytes_final"]
    trained = summary.loc[["strongref", "weakref", "retain_grad"]]
    assert (trained["loss_last_epoch"] < 0.9 * trained["loss_first_epoch"]).all()
    # the same seed, the same steps: every variant trains identically (memory is all that differs)
    assert trained["loss_last_epoch"].nunique() == 1
    # no_grad only evaluates: its loss does not move
    assert summary.loc["no_grad", "loss_first_epoch"] == summary.loc["no_grad", "loss_last_epoch"]
    assert run.meta["recorded_figures"] == ["loss_first_epoch", "loss_last_epoch"]  # shown by show and the report
    assert "loss last epoch" in (run.path / "report.html").read_text()
    losses = run.records[run.records["variant"] == "weakref"]["loss"]
    assert len(losses) == 30 and losses.iloc[-5:].mean() < losses.iloc[:5].mean()


def test_the_model_is_exact_across_batch_sizes_and_widths(tmp_path: Path) -> None:
    run = small_run(tmp_path, variants=["weakref", "retain_grad", "no_grad"], probes=EXACT_PROBES,
                    params={"gc": "off", "epochs": 1, "batch": [7, 100], "hidden": [3, 40], "dtype": "float32"})
    assert len(run.summary) == 12 and (run.summary["status"] == "ok").all()
    assert (run.summary["numpy_bytes_final"] == run.summary["expected_numpy_bytes_final"]).all(), \
        run.summary[["variant", "batch", "hidden", "numpy_bytes_final", "expected_numpy_bytes_final"]]


def test_strongref_holds_every_step_until_a_collection(tmp_path: Path) -> None:
    off = small_run(tmp_path, variants=["strongref"], probes=EXACT_PROBES, params={"gc": "off", "epochs": 2})
    on = small_run(tmp_path, variants=["strongref", "weakref"], probes=[*EXACT_PROBES, "cycle_debt"],
                   params={"hidden": 50})  # 10 epochs: 100 steps, a collection every ~30
    p = Params(get_experiment("exp_mlp").defaults(), gc="off", epochs=2)
    # every finished step's batch, graph and grads stay, beside what weakref holds of the last one
    held = int(off.summary.loc[0, "numpy_bytes_final"]) - expected("weakref", p).numpy_bytes_final
    assert held == sum(step_bytes(p, b, intermediate_grads=True) for b in batch_sizes(p)[:-1]) == 19 * step_bytes(
        p, 30, intermediate_grads=True)
    strong = on.summary.set_index("variant")
    assert strong.loc["strongref", "gc_collections"] > 0  # collections came and freed finished steps
    assert strong.loc["strongref", "numpy_bytes_peak"] > 2 * strong.loc["weakref", "numpy_bytes_peak"]
    assert strong.loc["weakref", "cycle_debt_peak_bytes"] == 0 < strong.loc["strongref", "cycle_debt_peak_bytes"]
    assert on.meta["status"] == "ok", [c.line() for c in on.checks() if not c.passed]


def _require(variant: str) -> None:
    from engine.variants import get_variant

    if not get_variant(variant).available():
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail(f"{variant} is not installed; CI requires every compared engine")
        pytest.skip(f"{variant} is not installed: {get_variant(variant).install_hint}")


@pytest.mark.parametrize("other", ["torch", "dezero_official_core"])
def test_the_same_loop_trains_identically_on_another_engine(other: str, tmp_path: Path) -> None:
    _require(other)
    run = small_run(tmp_path, variants=["retain_grad", other], params={"gc": "off", "epochs": 2})
    assert (run.summary["status"] == "ok").all(), run.meta.get("failed_trials")
    records = run.records
    ours = records[records["variant"] == "retain_grad"]["loss"].to_numpy()
    theirs = records[records["variant"] == other]["loss"].to_numpy()
    assert len(ours) == len(theirs) == 20
    np.testing.assert_allclose(theirs, ours, rtol=1e-9)
    assert theirs[-5:].mean() < theirs[:5].mean()
    if other == "dezero_official_core":  # it frees graphs and grads as retain_grad does: judged by its model
        row = run.summary.set_index("variant").loc[other]
        assert row["numpy_bytes_final"] == row["expected_numpy_bytes_final"]
    else:
        assert pd.isna(run.summary.set_index("variant").loc[other, "numpy_bytes_final"])


def test_the_memory_guard_judges_a_plan_by_the_models_ceiling(tmp_path: Path) -> None:
    from harness.errors import UsageError

    run = small_run(tmp_path, params={"epochs": 2, "batch": [30, 300], "hidden": 200})
    for _, row in run.summary.iterrows():  # the ceiling holds what was measured
        p = Params(get_experiment("exp_mlp").defaults(), epochs=2, batch=int(row["batch"]), hidden=200)
        assert row["numpy_bytes_peak"] <= expected(row["variant"], p).guard_peak
    with pytest.raises(UsageError, match=r"memory guard: trial strongref .* \(the model's ceiling\)"):
        small_run(tmp_path, params={"batch": 300, "hidden": 10**6})
