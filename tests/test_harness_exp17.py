"""exp17 end to end through the CLI: the seeds' step-17 claim, measured exactly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

GRAPH_BYTES = 4 * 80_000  # x and three square() outputs, 10,000 float64 each


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def run_dir_of(result: subprocess.CompletedProcess) -> Path:
    """`run` prints the run directory as its last line."""
    return Path(result.stdout.strip().splitlines()[-1])


def by_variant(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.set_index("variant")


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("default")
    result = harness("run", "exp17", "--out", str(out), "--no-overhead", cwd=out)
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir_of(result)


def test_default_run_writes_tables_meta_and_plots(default_run: Path) -> None:
    for name in ("samples.csv", "gc_events.csv", "timeline.csv", "records.csv", "summary.csv",
                 "meta.json", "memory.png", "summary.png"):
        assert (default_run / name).is_file(), name
    meta = json.loads((default_run / "meta.json").read_text())
    assert meta["status"] == "ok"
    assert meta["experiment"] == "exp17"
    assert meta["params"] == {"iterations": 10, "size": 10000, "depth": 3, "gc": "on", "seed": 0,
                              "dtype": "float64"}
    for key in ("command", "python", "platform", "versions", "gc_thresholds", "allocator_env",
                "git_commit", "started", "finished"):
        assert key in meta, key
    assert meta["versions"]["numpy"] and meta["versions"]["pandas"] and meta["versions"]["psutil"]


def test_default_run_strongref_holds_every_graph_weakref_one(default_run: Path) -> None:
    summary = by_variant(pd.read_csv(default_run / "summary.csv"))
    # No collection fell in ten iterations, so strongref holds all ten graphs.
    assert summary.loc["strongref", "gc_collections"] == 0
    assert summary.loc["strongref", "numpy_bytes_final"] == 10 * GRAPH_BYTES == 3_200_000
    assert summary.loc["weakref", "numpy_bytes_final"] == GRAPH_BYTES
    assert summary.loc["no_grad", "numpy_bytes_final"] == 2 * 80_000
    for variant in ("weakref", "no_grad"):
        assert summary.loc[variant, "numpy_bytes_final"] == summary.loc[variant, "expected_numpy_bytes_final"]
        assert summary.loc[variant, "measured_over_expected"] == 1.0
    # With the GC on, strongref's model is a bound (what every graph holds), not a
    # prediction: shown as a bound, never divided into a ratio.
    assert pd.isna(summary.loc["strongref", "expected_numpy_bytes_final"])
    assert pd.isna(summary.loc["strongref", "measured_over_expected"])
    assert summary.loc["strongref", "bound_numpy_bytes_final"] == 10 * GRAPH_BYTES
    assert summary.loc["strongref", "bytes_per_iteration"] == GRAPH_BYTES
    assert summary.loc["weakref", "bytes_per_iteration"] == 0


def test_samples_table_has_the_documented_columns(default_run: Path) -> None:
    samples = pd.read_csv(default_run / "samples.csv")
    for column in ("variant", "repeat", "iteration", "numpy_bytes", "numpy_bytes_peak", "rss_bytes",
                   "live_variables", "live_functions"):
        assert column in samples, column
    strong = samples[(samples.variant == "strongref") & (samples.phase == "end")]
    assert list(strong.numpy_bytes) == [GRAPH_BYTES * (i + 1) for i in range(10)]
    assert list(strong.live_functions) == [3 * (i + 1) for i in range(10)]
    weak = samples[(samples.variant == "weakref") & (samples.phase == "end")]
    assert set(weak.live_functions) == {3} and set(weak.live_variables) == {4}
    assert (samples.rss_bytes > 0).all()
    gc_events = pd.read_csv(default_run / "gc_events.csv")
    for column in ("variant", "repeat", "iteration", "phase", "generation", "collections", "collected",
                   "uncollectable"):
        assert column in gc_events, column


def test_run_prints_summary_and_path_last(tmp_path: Path) -> None:
    result = harness("run", "exp17", "--param", "iterations=2", "--variant", "weakref", "--no-overhead",
                     "--no-plots", "--probe", "tracemalloc", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "numpy_bytes_final" in lines[0]
    assert Path(lines[-1]).is_dir()
    shown = harness("show", lines[-1], cwd=tmp_path)
    assert shown.returncode == 0 and "weakref" in shown.stdout and "320000" in shown.stdout


def test_gc_off_twenty_iterations_is_exact_and_repeatable(tmp_path: Path) -> None:
    finals = []
    for _ in range(2):
        result = harness("run", "exp17", "--param", "gc=off", "--param", "iterations=20",
                         "--no-overhead", "--no-plots", "--probe", "tracemalloc", "--probe", "gc",
                         "--out", str(tmp_path), cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        summary = by_variant(pd.read_csv(run_dir_of(result) / "summary.csv"))
        assert summary.loc["strongref", "numpy_bytes_final"] == 6_400_000
        assert summary.loc["weakref", "numpy_bytes_final"] == 320_000
        assert summary.loc["strongref", "gc_collections"] == 0
        finals.append(summary[["numpy_bytes_final", "numpy_bytes_peak"]])
    pd.testing.assert_frame_equal(finals[0], finals[1])


def test_gc_on_300_iterations_gen0_collections_reclaim_strongref_graphs(tmp_path: Path) -> None:
    result = harness("run", "exp17", "--param", "iterations=300", "--variant", "strongref",
                     "--variant", "weakref", "--no-overhead", "--no-plots",
                     "--probe", "tracemalloc", "--probe", "gc", "--probe", "census",
                     "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    run = run_dir_of(result)
    events = pd.read_csv(run / "gc_events.csv")
    strong_events = events[events.variant == "strongref"]
    assert (strong_events.generation == 0).sum() >= 2
    assert (strong_events.collected > 0).all()
    # weakref frees every graph by reference counting: nothing for the GC.
    assert (events.variant == "weakref").sum() == 0
    samples = pd.read_csv(run / "samples.csv")
    strong = samples[(samples.variant == "strongref") & (samples.phase == "end")].set_index("iteration")
    for iteration in strong_events.iteration:
        # the sawtooth: bytes fall in the iteration a collection fell in
        assert strong.loc[iteration, "numpy_bytes"] < strong.loc[iteration - 1, "numpy_bytes"]
    summary = by_variant(pd.read_csv(run / "summary.csv"))
    assert 320_000 <= summary.loc["strongref", "numpy_bytes_final"] < 300 * 320_000
    # every byte strongref holds is a live Variable's array (part-graphs included)
    assert summary.loc["strongref", "numpy_bytes_final"] == 80_000 * summary.loc["strongref", "live_variables_final"]


def test_check_passes_on_a_finished_run(default_run: Path) -> None:
    result = harness("check", str(default_run), cwd=default_run)
    assert result.returncode == 0, result.stdout
    assert "FAIL" not in result.stdout and "PASS" in result.stdout


def test_list_names_experiments_variants_params_and_probes(tmp_path: Path) -> None:
    result = harness("list", cwd=tmp_path)
    assert result.returncode == 0
    for text in ("exp17", "strongref", "weakref", "retain_grad", "no_grad", "--param iterations=10",
                 "--param size=10000", "tracemalloc", "census", "sampled"):
        assert text in result.stdout, text


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "nope"], "unknown experiment 'nope'; choose from:"),
        (["run", "exp17", "--variant", "nope"], "unknown variant 'nope'; choose from:"),
        (["run", "exp17", "--param", "colour=red"], "has no parameter 'colour'"),
        (["run", "exp17", "--param", "size=ten"], "takes a whole number"),
        (["run", "exp17", "--param", "size=0"], "must be at least 1"),
        (["run", "exp17", "--param", "dtype=float128"], "must be one of: float64, float32"),
        (["run", "exp17", "--probe", "x"], "unknown probe 'x'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = harness(*args, "--out", str(tmp_path), cwd=tmp_path) if args[0] == "run" else harness(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
