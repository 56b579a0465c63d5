"""The plots, inspected as Figure objects: small multiples for a sweep, one
legend entry and one look per variant in every figure of a run, the peaks
between samples, GC markers on the drop, n/a and "no model" written out, a
bound drawn as a bound, and the mprof-style timeline. Built from one small
real run and from small tables with the real columns."""
from __future__ import annotations

import gc

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

import harness
from experiments.exp16 import EXPERIMENT as EXP16
from experiments.exp17 import EXPERIMENT as EXP17
from harness import plots
from harness.tables import GC_COLUMNS, IDENTITY, SAMPLE_COLUMNS, TIMELINE_COLUMNS, normalize_samples, summary_frame

MB = 1e6
PARAMS = {"iterations": 3, "size": 1000, "depth": 3, "gc": "on", "seed": 0, "dtype": "float64"}
PARAM_NAMES = list(PARAMS)


# -- tables with the real columns -------------------------------------------

def identity(trial: int, variant: str, params: dict[str, Any], experiment: str = "exp17") -> dict[str, Any]:
    return {"experiment": experiment, "variant": variant, "repeat": 0, "trial": trial, **PARAMS, **params}


def sample_rows(trial: int, variant: str, numpy: list[float | None], peaks: list[float | None] | None = None,
                params: dict[str, Any] | None = None, experiment: str = "exp17") -> list[dict[str, Any]]:
    """A start sample, then one per iteration end."""
    peaks = peaks or numpy
    return [{**identity(trial, variant, params or {}, experiment), "sample": k, "iteration": k - 1,
             "phase": "start" if k == 0 else "end", "t_s": 0.01 * k, "numpy_bytes": numpy[k],
             "numpy_bytes_peak": peaks[k], "rss_bytes": 50_000_000 + 4096 * k, "live_variables": 0,
             "live_functions": 0, "gc_count_gen0": 0, "gc_count_gen1": 0, "gc_count_gen2": 0}
            for k in range(len(numpy))]


def samples_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = list(IDENTITY) + PARAM_NAMES + list(SAMPLE_COLUMNS)
    return normalize_samples(pd.DataFrame(rows, columns=columns))


def events_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(IDENTITY) + PARAM_NAMES + list(GC_COLUMNS))


def summary_row(trial: int, variant: str, final: float | None, peak: float | None,
                expected: tuple[float | None, float | None] = (None, None),
                bound: tuple[float | None, float | None] = (None, None),
                params: dict[str, Any] | None = None, status: str = "ok") -> dict[str, Any]:
    return {**identity(trial, variant, params or {}), "status": status, "numpy_bytes_final": final,
            "numpy_bytes_peak": peak, "expected_numpy_bytes_final": expected[0],
            "expected_numpy_bytes_peak": expected[1], "bound_numpy_bytes_final": bound[0],
            "bound_numpy_bytes_peak": bound[1], "gc_collections": 1 if variant == "strongref" else 0}


def timeline_rows(trial: int, variant: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{**identity(trial, variant, params or {}), "t_s": 0.005 * k, "rss_bytes": 50_000_000 + 10_000 * k}
            for k in range(20)]


def sweep_tables(variants: tuple[str, ...] = ("strongref", "weakref", "no_grad"),
                 sizes: tuple[int, ...] = (1000, 2000)) -> dict[str, pd.DataFrame]:
    """A sweep over size, every table a run writes: samples, gc_events, summary, timeline, records."""
    samples, events, summary, timeline, records = [], [], [], [], []
    trial = 0
    for size in sizes:
        for variant in variants:
            p = {"size": size}
            graph = 4 * 8 * size
            if variant == "strongref":
                numpy = [0, graph, 2 * graph, graph]  # a collection in the last interval
                events.append({**identity(trial, variant, p), "iteration": 2, "phase": "end", "generation": 0,
                               "collections": 1, "collected": 32, "uncollectable": 0})
                summary.append(summary_row(trial, variant, graph, 2 * graph, bound=(3 * graph, 3 * graph), params=p))
            else:
                numpy = [0, graph, graph, graph]
                summary.append(summary_row(trial, variant, graph, 2 * graph, expected=(graph, 2 * graph), params=p))
            samples += sample_rows(trial, variant, numpy, params=p)
            timeline += timeline_rows(trial, variant, p)
            records += [{**identity(trial, variant, p), "iteration": 2, "object_type": kind,
                         "count": 8 if variant == "strongref" else 0} for kind in ("Variable", "Function")]
            trial += 1
    return {"samples": samples_table(samples), "gc_events": events_table(events),
            "summary": summary_frame(EXP17, summary),
            "timeline": pd.DataFrame(timeline, columns=list(IDENTITY) + PARAM_NAMES + list(TIMELINE_COLUMNS)),
            "records": pd.DataFrame(records)}


# -- looking at figures -----------------------------------------------------

def legend_labels(fig: Figure) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def legend_colors(fig: Figure, names: list[str]) -> dict[str, str]:
    """The colour each named legend entry is drawn in."""
    found = {}
    for legend in fig.legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if text.get_text() in names:
                color = handle.get_color() if isinstance(handle, Line2D) else handle.get_facecolor()
                found[text.get_text()] = matplotlib.colors.to_hex(color)
    return found


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]


def plot_axes(fig: Figure) -> list[Any]:
    """The panels (not a secondary axis naming the points after the loop)."""
    return [ax for ax in fig.axes if ax.get_ylabel()]


# -- a real run ---------------------------------------------------------------

@pytest.fixture(scope="module")
def swept_run(tmp_path_factory: pytest.TempPathFactory) -> harness.Run:
    """exp17 over two sizes, three variants; enough iterations that strongref's
    collector runs (a graph leaves 16 containers: 60 on 3.11's threshold of 700,
    160 on 3.13's 2000); the sampled probe, so there is a timeline; plots written."""
    iterations = gc.get_threshold()[0] // 16 + 16
    return harness.run("exp17", variants=["strongref", "weakref", "no_grad"],
                       params={"size": [1000, 2000], "iterations": iterations},
                       probes=["tracemalloc", "rss", "gc", "sampled"],
                       out=tmp_path_factory.mktemp("plots"), measure_overhead=False, progress=False)


def test_a_real_sweep_is_drawn_in_small_multiples_with_a_legend_entry_per_variant(swept_run: harness.Run) -> None:
    found = swept_run.figures()
    assert set(found) == {"memory", "timeline", "summary", "sweep"}
    memory = found["memory"]
    # a panel (numpy bytes above, RSS below) per swept value, titled with it
    assert len(plot_axes(memory)) == 4
    assert {ax.get_title() for ax in memory.axes if ax.get_title()} == {"size=1000", "size=2000"}
    labels = legend_labels(memory)
    assert [label for label in labels if label in ("strongref", "weakref", "no_grad")] == \
        ["strongref", "weakref", "no_grad"]
    assert not any("size=" in label for label in labels)  # never an entry per trial
    assert "GC collection, gen 0" in labels
    assert all(ax.get_xlabel() == "iteration" for ax in plot_axes(memory) if ax.get_xlabel())
    summary = found["summary"]
    assert {ax.get_title() for ax in summary.axes} == {"size=1000", "size=2000"}
    assert all([t.get_text() for t in ax.get_xticklabels()] == ["held at the end", "peak"] for ax in summary.axes)


def test_a_run_writes_the_timeline_plot_from_its_timeline_table(swept_run: harness.Run) -> None:
    assert "timeline.png" in swept_run.meta["plots"]
    assert (swept_run.path / "timeline.png").stat().st_size > 0
    timeline = swept_run.figures()["timeline"]
    assert len(plot_axes(timeline)) == 2  # a panel per size
    for ax in plot_axes(timeline):
        assert ax.get_xlabel() == "time since the trial's start (s)" and ax.get_ylabel().startswith("RSS")
        drawn = [line for line in ax.lines if len(line.get_xdata()) > 2 and line.get_linestyle() != "None"]
        assert len(drawn) == 3  # a line per trial: three variants at this size
    # strongref's collections, placed on its line's clock
    assert "GC collection, gen 0" in legend_labels(timeline)


def test_one_variant_has_one_colour_in_every_figure_of_a_run() -> None:
    tables = sweep_tables()
    found = plots.figures(EXP17, tables)
    assert set(found) == {"memory", "timeline", "summary", "sweep", "census"}
    variants = ["strongref", "weakref", "no_grad"]
    colours = {name: legend_colors(fig, variants) for name, fig in found.items()}
    for name, by_variant in colours.items():
        assert set(by_variant) == set(variants), name
        assert by_variant == colours["memory"], name
    assert len(set(colours["memory"].values())) == 3
    # and the lines and bars themselves are drawn in them
    memory_lines = {matplotlib.colors.to_hex(line.get_color()) for ax in found["memory"].axes for line in ax.lines
                    if len(line.get_xdata()) > 2}
    assert memory_lines == set(colours["memory"].values())
    bars = {matplotlib.colors.to_hex(p.get_facecolor()) for ax in found["summary"].axes for p in ax.patches
            if isinstance(p, Rectangle) and p.get_height() > 0}
    assert bars == set(colours["memory"].values())


def test_a_built_in_variant_keeps_its_look_from_run_to_run() -> None:
    one, other = plots.Palette(["strongref", "weakref"]), plots.Palette(["weakref", "my_engine", "strongref"])
    assert one["weakref"] == other["weakref"] and one["strongref"] == other["strongref"]
    assert other["my_engine"].color not in (other["weakref"].color, other["strongref"].color)


def test_lines_that_coincide_stay_visible() -> None:
    """Equal readings for two variants: each variant has its own line style and marker."""
    rows = sample_rows(0, "weakref", [0, 320_000, 320_000]) + sample_rows(1, "retain_grad", [0, 320_000, 320_000])
    fig = plots.memory_figure(EXP17, samples_table(rows), events_table([]))
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 3]
    assert len(lines) == 2
    (a, b) = lines
    assert a.get_color() != b.get_color()
    assert a.get_marker() != b.get_marker()
    assert a.get_linewidth() > b.get_linewidth()  # the one below shows around the one on top
    palette = plots.Palette(["weakref", "retain_grad"])
    assert palette["weakref"].linestyle != palette["retain_grad"].linestyle


def test_a_peak_between_two_samples_is_drawn() -> None:
    """no_grad's peak: above the readings on both sides of its interval."""
    rows = sample_rows(0, "no_grad", [0, 160_000, 160_000], peaks=[0, 240_000, 320_000])
    fig = plots.memory_figure(EXP17, samples_table(rows), events_table([]))
    ys = [y for line in fig.axes[0].lines for y in np.atleast_1d(line.get_ydata())]
    assert any(np.isclose(y, 0.32) for y in ys) and any(np.isclose(y, 0.24) for y in ys)
    assert "peak between two sample points" in legend_labels(fig)


def test_a_gc_marker_sits_on_the_drop_and_the_axis_counts_iterations() -> None:
    rows = sample_rows(0, "strongref", [0, 1_000_000, 2_000_000, 500_000])
    events = events_table([{**identity(0, "strongref", {}), "iteration": 2, "phase": "end", "generation": 0,
                            "collections": 1, "collected": 30, "uncollectable": 0}])
    fig = plots.memory_figure(EXP17, samples_table(rows), events)
    ax_numpy, ax_rss = plot_axes(fig)
    markers = [line for line in ax_numpy.lines if line.get_marker() == "v"]
    assert len(markers) == 1
    (x,), (y,) = markers[0].get_xdata(), markers[0].get_ydata()
    # the drop: from the end of iteration 2 (x = 2, 2 MB) to the end of iteration 3 (x = 3, 0.5 MB)
    assert 2 < x < 3 and 0.5 < y < 2
    assert ax_rss.get_xlabel() == "iteration"


def test_n_a_and_no_model_are_written_on_the_plots() -> None:
    rows = sample_rows(0, "weakref", [0, 320_000, 320_000]) + sample_rows(1, "torch", [None, None, None])
    summary = summary_frame(EXP17, [
        summary_row(0, "weakref", 320_000, 640_000, expected=(320_000, 640_000)),
        summary_row(1, "torch", None, None),  # tracemalloc cannot see it, and no model describes it
        summary_row(2, "my_engine", 400_000, 800_000),  # measured, no model
    ])
    memory = plots.memory_figure(EXP17, samples_table(rows), events_table([]), summary)
    assert any("n/a" in text and "torch" in text for text in texts(memory))
    written = texts(plots.summary_figure(EXP17, summary))
    assert sum("no model" in text for text in written) == 4  # torch and my_engine, at the end and at the peak
    assert sum(text.startswith("n/a") for text in written) == 2  # torch's two figures


def test_a_bound_is_drawn_as_a_bound_and_an_exact_figure_as_a_line_not_a_bar() -> None:
    summary = summary_frame(EXP17, [
        summary_row(0, "strongref", 960_000, 960_000, bound=(3_200_000, 3_200_000)),
        summary_row(1, "weakref", 320_000, 640_000, expected=(320_000, 640_000)),
    ])
    fig = plots.summary_figure(EXP17, summary)
    (ax,) = fig.axes
    heights = sorted(round(p.get_height() * MB) for p in ax.patches if isinstance(p, Rectangle))
    assert heights == [320_000, 640_000, 960_000, 960_000]  # measured bars only: no "expected" bar
    segments = [(c.get_linestyle(), round(seg[0][1] * MB)) for c in ax.collections if isinstance(c, LineCollection)
                for seg in c.get_segments()]
    exact = {y for style, y in segments if style == [(0, None)] or style == "solid"}
    dashed = {y for style, y in segments if y not in exact}
    assert exact == {320_000, 640_000} and dashed == {3_200_000}
    assert sum("\u2264 3.2 MB" in text for text in texts(fig)) == 2
    labels = legend_labels(fig)
    assert "model: expected (exact)" in labels and any("upper bound" in label for label in labels)


def test_exp16s_summary_has_no_empty_panel() -> None:
    """Every trial holds 0 bytes at the end, as the model says: written as 0, beside the peaks."""
    def row(trial: int, variant: str, peak: int) -> dict[str, Any]:
        return {"experiment": "exp16", "variant": variant, "repeat": 0, "trial": trial, "iterations": 10,
                "size": 10000, "depth": 3, "gc": "off", "seed": 0, "dtype": "float64", "status": "ok",
                "numpy_bytes_final": 0, "numpy_bytes_peak": peak, "expected_numpy_bytes_final": 0,
                "expected_numpy_bytes_peak": peak}
    summary = summary_frame(EXP16, [row(0, "strongref", 3_200_000), row(1, "weakref", 640_000)])
    fig = plots.summary_figure(EXP16, summary)
    for ax in fig.axes:
        assert any(isinstance(p, Rectangle) and p.get_height() > 0 for p in ax.patches)
        assert [t.get_text() for t in ax.texts].count("0") == 2


def test_a_two_parameter_sweep_of_36_trials_is_a_grid_of_readable_panels() -> None:
    variants = ("strongref", "weakref", "retain_grad", "no_grad")
    summary = summary_frame(EXP17, [
        summary_row(n, variant, 320_000, 640_000, expected=(320_000, 640_000),
                    params={"size": size, "iterations": iterations})
        for n, (size, iterations, variant) in enumerate(
            (s, i, v) for s in (1000, 10_000, 50_000) for i in (20, 100, 300) for v in variants)])
    facets = plots.facets_of(EXP17, summary)
    assert (facets.nrows, facets.ncols) == (3, 3) and facets.names == ["iterations", "size"]
    fig = plots.summary_figure(EXP17, summary)
    assert len(fig.axes) == 9
    assert all(len(ax.get_xticklabels()) == 2 for ax in fig.axes)
    assert [label for label in legend_labels(fig) if label in variants] == list(variants)
    sweep = plots.sweep_figure(EXP17, summary)
    assert len(sweep.axes) == 9  # three metrics against one parameter, a column per value of the other
    assert [label for label in legend_labels(sweep) if label in variants] == list(variants)


def test_the_timeline_figure_is_drawn_when_there_is_a_timeline_and_only_then() -> None:
    tables = sweep_tables(sizes=(1000,))
    timeline = plots.figures(EXP17, tables)["timeline"]
    (ax,) = plot_axes(timeline)
    assert ax.get_xlabel() == "time since the trial's start (s)" and ax.get_ylabel().startswith("RSS")
    lines = [line for line in ax.lines if len(line.get_xdata()) == 20]
    assert len(lines) == 3 and np.isclose(max(lines[0].get_xdata()), 19 * 0.005)
    tables["timeline"] = tables["timeline"].iloc[0:0]
    assert "timeline" not in plots.figures(EXP17, tables)


def test_a_long_timeline_is_kept_as_an_envelope_that_keeps_its_peak() -> None:
    from harness.table_writer import PLOT_TIMELINE_POINTS, thin_timeline

    points = 50_000
    rss = np.full(points, 50_000_000)
    rss[31_337] = 90_000_000  # one poll's spike
    frame = pd.DataFrame({**identity(0, "weakref", {}), "t_s": np.arange(points) * 0.005, "rss_bytes": rss})
    read = None
    for start in range(0, points, 7_000):  # as the run's writer keeps it, a batch of the trial's at a time
        batch = frame.iloc[start:start + 7_000]
        read = thin_timeline(batch if read is None else pd.concat([read, batch], ignore_index=True))
    assert len(read) <= 2 * PLOT_TIMELINE_POINTS and read["rss_bytes"].max() == 90_000_000
    assert read["t_s"].is_monotonic_increasing


def test_figures_rendered_in_child_processes_are_the_ones_rendered_here(
        swept_run: harness.Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_plots renders every figure but the first in a forked child where it
    may: the PNGs are the same bytes as rendered one after another here, and a
    figure a child failed to write is rendered here instead."""
    import os

    from harness.results import read_table

    tables = {name: read_table(swept_run.path, name) for name in ("samples", "summary", "gc_events", "timeline")}
    written = {}
    for mode in ("here", "children"):
        monkeypatch.setattr(plots, "_may_fork", lambda: mode == "children")
        out = tmp_path / mode
        out.mkdir()
        paths = plots.write_plots(out, EXP17, tables, "footer")
        written[mode] = {p.name: p.read_bytes() for p in paths}
    assert set(written["here"]) == {"memory.png", "timeline.png", "summary.png", "sweep.png"}
    assert written["children"] == written["here"]

    run_pid = os.getpid()
    real_save = plots._save

    def fails_in_a_child(fig, path):
        if os.getpid() != run_pid:
            raise RuntimeError("a child that cannot render")
        real_save(fig, path)

    monkeypatch.setattr(plots, "_may_fork", lambda: True)
    monkeypatch.setattr(plots, "_save", fails_in_a_child)
    out = tmp_path / "fallback"
    out.mkdir()
    assert {p.name: p.read_bytes() for p in plots.write_plots(out, EXP17, tables, "footer")} == written["here"]
