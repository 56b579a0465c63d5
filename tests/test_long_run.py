"""A long run stays small: the parent streams each trial's rows to the tables a
chunk at a time (harness.table_writer), so its memory does not grow with the
iterations; chunking changes no figure; readers load only what they use."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import harness
import harness.table_writer as table_writer
from harness.registry import get_experiment
from harness.results import read_table
from harness.runner import execute_trial
from harness.table_writer import RunTableWriter
from harness.trial import TrialSpec

ROOT = Path(__file__).resolve().parent.parent
PROBES = ["tracemalloc", "rss", "gc", "sampled"]
# Long enough for several collections on any interpreter (gen-0's threshold is 700 or 2000).
ITERATIONS = round(300 * gc.get_threshold()[0] / 700)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory):
    """One strongref trial with the GC on: collections fall between many sample points."""
    directory = tmp_path_factory.mktemp("trial")
    experiment = get_experiment("exp17")
    params = {**experiment.defaults(), "iterations": ITERATIONS}
    spec = TrialSpec(0, "exp17", "strongref", params, 0, 0, PROBES, str(directory / "0.jsonl"))
    outcome = execute_trial(spec, 120, {})
    assert outcome.status == "ok", outcome.error
    return experiment, outcome


def tabulate(directory: Path, experiment, outcome, **writer) -> dict[str, bytes]:
    directory.mkdir()
    tables = RunTableWriter(directory, experiment, PROBES, **writer)
    row = tables.add(outcome)
    tables.commit()
    files = {name: (directory / name).read_bytes() for name in ("samples.csv", "gc_events.csv", "timeline.csv")}
    return {**files, "summary": repr(sorted(row.items())).encode(), "plots": tables}


def test_chunk_boundaries_change_no_row_and_no_figure(trial, tmp_path: Path) -> None:
    experiment, outcome = trial
    whole = tabulate(tmp_path / "whole", experiment, outcome, chunk_rows=1 << 20)
    chunked = tabulate(tmp_path / "chunked", experiment, outcome, chunk_rows=7)  # many boundaries
    for name in ("samples.csv", "gc_events.csv", "timeline.csv", "summary"):
        assert chunked[name] == whole[name], name
    events = pd.read_csv(tmp_path / "chunked" / "gc_events.csv")
    assert len(events) >= 2 and events["collections"].sum() >= 2  # there was something to cut through
    assert len(pd.read_csv(tmp_path / "chunked" / "samples.csv")) == ITERATIONS + 1


def test_the_summary_equals_the_one_built_from_every_row_at_once(trial) -> None:
    from harness.tables import gc_events, summarize

    experiment, outcome = trial
    samples = outcome.samples()
    events = gc_events(samples, outcome.result["gc_at_end"])
    summary = summarize(experiment, outcome)
    assert summary["gc_collections"] == sum(e["collections"] for e in events)
    assert summary["gc_collected_objects"] == sum(e["collected"] for e in events)
    assert summary["numpy_bytes_final"] == samples["numpy_bytes"].iloc[-1]
    assert summary["numpy_bytes_peak"] == max(samples["numpy_bytes"].max(), samples["numpy_bytes_peak"].max())
    assert summary["iterations_completed"] == (samples["phase"] == "end").sum() == ITERATIONS


def test_a_long_trial_is_drawn_from_an_envelope_that_keeps_every_peak_and_drop(trial, tmp_path: Path,
                                                                             monkeypatch) -> None:
    experiment, outcome = trial
    monkeypatch.setattr(table_writer, "PLOT_ROWS", 40)
    tables = tabulate(tmp_path / "drawn", experiment, outcome, chunk_rows=64)["plots"]
    drawn = tables.tables_for_plots()["samples"]
    every = outcome.samples()
    assert len(drawn) <= 40 < len(every)  # two rows for each of 20 runs, whatever the chunks
    assert drawn["numpy_bytes"].max() == every["numpy_bytes"].max()
    assert drawn["numpy_bytes"].min() == every["numpy_bytes"].min()
    assert drawn.attrs["decimated"] == {0: (len(every), len(drawn))}
    # the GC markers drawn sit on rows that are drawn
    marked = tables.tables_for_plots()["gc_events"]
    assert set(zip(marked["iteration"], marked["phase"])) <= set(zip(drawn["iteration"], drawn["phase"]))


def test_the_parquet_copy_holds_the_same_rows(trial, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    experiment, outcome = trial
    tabulate(tmp_path / "run", experiment, outcome, chunk_rows=50, parquet=True)
    (tmp_path / "run" / "meta.json").write_text(json.dumps({"experiment": "exp17", "params": {"gc": "on"}}))
    from_csv = read_table(tmp_path / "run", "samples")
    from_parquet = pd.read_parquet(tmp_path / "run" / "samples.parquet", dtype_backend="numpy_nullable")
    assert len(from_parquet) == len(from_csv) == ITERATIONS + 1
    for column in ("sample", "iteration", "numpy_bytes", "numpy_bytes_peak", "gc_count_gen0"):
        assert from_parquet[column].astype("Int64").tolist() == from_csv[column].astype("Int64").tolist(), column
    assert from_parquet["phase"].tolist() == from_csv["phase"].tolist()
    without = tmp_path / "without"
    tabulate(without, experiment, outcome, parquet=False)
    assert not (without / "samples.parquet").exists()


def peak_parent_rss(tmp_path: Path, iterations: int) -> tuple[int, dict]:
    out = tmp_path / f"out{iterations}"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", "weakref", "--probe", "tracemalloc",
         "--param", "gc=off", "--param", "size=1", "--param", f"iterations={iterations}", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (run,) = (out / "exp17").iterdir()
    meta = json.loads((run / "meta.json").read_text())
    return meta["parent_peak_rss_bytes"], meta


def test_the_parents_memory_does_not_grow_with_the_iterations(tmp_path: Path) -> None:
    """60,000 iterations against 1,000: the parent's peak RSS (getrusage) may
    differ by allocator noise, stated as 20 MB; holding every row, as the
    parent once did (about 1.2 kB per row), would add about 70 MB."""
    short, _ = peak_parent_rss(tmp_path, 1_000)
    long, meta = peak_parent_rss(tmp_path, 60_000)
    assert meta["tables"]["samples"]["rows"] == 60_001
    assert long - short < 20 * 2**20, f"parent peak RSS {short:,} B at 1,000 iterations, {long:,} B at 60,000"


def test_show_and_check_read_only_the_summary(tmp_path: Path) -> None:
    result = harness.run("exp17", variants=["weakref"], params={"iterations": 5}, out=tmp_path,
                         probes=["tracemalloc"], plots=False, progress=False)
    (result.path / "samples.csv").write_text("not a table at all", encoding="utf-8")
    for command in ("show", "check"):
        done = subprocess.run([sys.executable, "-m", "harness", command, str(result.path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert harness.load(result.path).summary["numpy_bytes_final"].tolist() == [320_000]
