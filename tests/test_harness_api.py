"""The Python API returns the tables and figures a notebook needs."""
from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

import harness
from harness.errors import UsageError


def test_run_returns_dataframes_figures_and_can_be_loaded_back(tmp_path: Path) -> None:
    run = harness.run("exp17", params={"iterations": 3, "gc": "off"}, out=tmp_path,
                      measure_overhead=False, progress=False, probes=["tracemalloc", "gc", "census"])
    summary = run.summary.set_index("variant")
    assert summary.loc["strongref", "numpy_bytes_final"] == 3 * 320_000
    assert summary.loc["weakref", "numpy_bytes_final"] == 320_000
    assert len(run.samples) == 3 * (1 + 3)  # a start sample and three iteration ends per variant
    assert all(check.passed for check in run.checks())
    figures = run.figures()
    assert set(figures) == {"memory", "summary"} and all(isinstance(f, Figure) for f in figures.values())
    loaded = harness.load(run.path)
    assert list(loaded.summary.numpy_bytes_final) == list(run.summary.numpy_bytes_final)


def test_a_list_value_sweeps_a_parameter(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"size": [1000, 2000], "iterations": 2},
                      out=tmp_path, measure_overhead=False, plots=False, progress=False,
                      probes=["tracemalloc"])
    assert list(run.summary["size"]) == [1000, 2000]
    assert list(run.summary["numpy_bytes_final"]) == [4 * 8_000, 4 * 16_000]


def test_repeats_use_recorded_distinct_seeds_and_give_identical_bytes(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["strongref"], params={"iterations": 2, "gc": "off"}, repeats=2,
                      out=tmp_path, measure_overhead=False, plots=False, progress=False,
                      probes=["tracemalloc"])
    assert list(run.summary["repeat"]) == [0, 1]
    assert run.summary["numpy_bytes_final"].nunique() == 1


def test_overhead_of_each_probe_is_reported(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 3}, out=tmp_path,
                      plots=False, progress=False, probes=["tracemalloc", "rss"], measure_overhead=True)
    row = run.summary.iloc[0]
    assert row["bare_workload_seconds"] > 0
    assert row["overhead_tracemalloc"] > 0 and row["overhead_rss"] > 0
    # each ratio comes with its spread over the interleaved rounds
    assert row["overhead_all_probes_iqr"] >= 0 and row["overhead_rss_iqr"] >= 0


def test_overhead_is_not_measured_by_default(tmp_path: Path) -> None:
    run = harness.run("exp17", variants=["weakref"], params={"iterations": 3}, out=tmp_path,
                      plots=False, progress=False, probes=["tracemalloc"])
    assert run.summary["overhead_all_probes"].isna().all()


def test_bad_parameter_value_raises_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must be at least 1"):
        harness.run("exp17", params={"iterations": 0}, out=tmp_path, progress=False)


def test_external_variants_are_judged_by_the_model_of_the_variant_they_behave_as() -> None:
    from harness.model import modelled_as

    assert modelled_as("weakref") == "weakref"
    assert modelled_as("dezero_official") == "retain_grad"
    assert modelled_as("dezero_official_no_grad") == "no_grad"
    assert modelled_as("torch") == "torch"  # no model: its buffers are not numpy's


def test_the_measured_process_imports_neither_pandas_nor_matplotlib() -> None:
    """Every experiment's trial starts without the harness's table and plot
    libraries, so they add nothing to the RSS it measures."""
    import subprocess
    import sys

    from harness.registry import all_experiments

    for name in all_experiments():
        code = (
            "import sys, harness.trial\n"
            "from harness.registry import get_experiment\n"
            f"get_experiment({name!r})\n"
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]", name


def test_an_experiment_sweeps_its_default_values_unless_the_user_sets_them() -> None:
    from harness.runner import RunConfig, make_plan

    plan = make_plan(RunConfig("exp17_sweep"))
    assert [p["size"] for p in plan.param_sets] == [100, 1_000, 10_000, 100_000]
    plan = make_plan(RunConfig("exp17_sweep", params={"size": [500]}))
    assert [p["size"] for p in plan.param_sets] == [500]


def test_a_run_and_its_figures_leave_the_users_matplotlib_as_it_was(tmp_path) -> None:
    """No `matplotlib.use`: a notebook's backend and its own figures survive a run."""
    code = f"""
import matplotlib
matplotlib.use("svg")  # a backend the harness would never pick
import matplotlib.pyplot as plt
plt.figure()
plt.plot([1, 2, 3])
before = (matplotlib.get_backend(), dict(matplotlib.rcParams), plt.get_fignums())
import harness
run = harness.run("exp17", variants=["weakref"], params={{"iterations": 3}}, out={str(tmp_path)!r},
                  probes=["tracemalloc"], progress=False)
assert (run.path / "memory.png").stat().st_size > 0
run.figures()
after = (matplotlib.get_backend(), dict(matplotlib.rcParams), plt.get_fignums())
assert after == before, (before[0], after[0], before[2], after[2])
print("ok")
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_run_renders_in_a_notebook_as_a_compact_summary(tmp_path) -> None:
    import harness

    run = harness.run("exp17", variants=["weakref"], params={"iterations": 3}, out=tmp_path,
                      probes=["tracemalloc"], progress=False)
    page = run._repr_html_()
    assert "status <b>ok</b>, checks 2 passed, 0 failed" in page
    assert "<table" in page and "numpy_bytes_final" in page and "320000" in page
    assert "PASS trial 0 weakref: numpy_bytes_final == 320,000" in page
    assert '<img src="data:image/png;base64,' in page
    assert harness.load(run.path)._repr_html_() == page  # the same from disk


def test_version_and_latest(tmp_path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("dezero-memlab ")
    none = cli("show", "latest")
    assert none.returncode == 2 and none.stderr == "harness: error: no run under results/ to call latest\n"
    for experiment in ("exp17", "exp16"):
        assert cli("run", experiment, "--variant", "weakref", "--probe", "tracemalloc", "--no-plots").returncode == 0
    shown = cli("show", "latest")
    assert shown.returncode == 0 and shown.stdout.startswith("exp16  run ")  # the newer run
    assert cli("check", "latest").returncode == 0
