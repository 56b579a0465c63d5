"""Plots of a run, built as matplotlib `Figure`s directly: no pyplot, no
backend chosen (a notebook's own `%matplotlib inline` and `plt.show()` keep
working after a run), no display needed; PNGs are rendered by Agg on save.

memory.png   numpy-domain bytes (top; dashed: the cycle debt, with the cycle_debt
             probe) and RSS growth since the trial's start
             (bottom) at each sample, a line
             per variant (and per swept parameter value), GC collections
             marked on the line where they fell. strongref climbs in a
             staircase and drops where a collection frees its cycles;
             weakref stays flat at one graph.
summary.png  per trial, measured against the analytic model's expected bytes,
             held at the end and at the peak.
sweep.png    when a numeric parameter is swept (`--param size=1e2,1e3,1e4`):
             peak bytes, bytes held at the end and GC collections against
             it, log axes, a colour per variant and a marker per value of any
             other swept parameter.
census.png   when the workload recorded a census (`object_type`, `count`
             rows, e.g. exp16): objects of each type per variant.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from harness.experiment import Experiment

MB = 1e6
GC_MARKERS = {0: "v", 1: "s", 2: "D"}


def _swept(experiment: Experiment, table: pd.DataFrame) -> list[str]:
    names = [p.name for p in experiment.params if p.name in table]
    return [n for n in names if table[n].nunique(dropna=False) > 1]


def _mb(values: pd.Series) -> pd.Series:
    """Megabytes as plain floats (a nullable integer's <NA> becomes NaN, which matplotlib skips)."""
    return pd.to_numeric(values, errors="coerce").astype("float64") / MB


def _label(row: pd.Series | dict[str, Any], swept: list[str]) -> str:
    parts = [str(row["variant"])] + [f"{n}={row[n]}" for n in swept]
    return ", ".join(parts)


def memory_figure(experiment: Experiment, samples: pd.DataFrame, gc_events: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(10, 7.5))
    ax_numpy, ax_rss = fig.subplots(2, 1, sharex=True)
    swept = _swept(experiment, samples)
    decimated = samples.attrs.get("decimated") or {}  # trial -> (rows, rows drawn): see harness.table_writer
    samples = samples.assign(line=samples.apply(lambda r: _label(r, swept), axis=1))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {label: colors[n % len(colors)] for n, label in enumerate(dict.fromkeys(samples["line"]))}
    marked_generations: set[int] = set()
    for (label, repeat), trial in samples.groupby(["line", "repeat"], sort=False):
        numpy_bytes = pd.to_numeric(trial["numpy_bytes"], errors="coerce").astype("float64")
        rss = pd.to_numeric(trial["rss_bytes"], errors="coerce").astype("float64")
        sees_numpy = numpy_bytes.notna().any()
        line_label = (label if sees_numpy else f"{label} (numpy n/a)") if repeat == 0 else None
        style = {"marker": ".", "color": color_of[label], "alpha": 1.0 if repeat == 0 else 0.35}
        if sees_numpy:
            ax_numpy.plot(trial["sample"], numpy_bytes / MB, label=line_label, **style)
        debt = (pd.to_numeric(trial["cycle_debt_bytes"], errors="coerce").astype("float64")
                if "cycle_debt_bytes" in trial else pd.Series(dtype="float64"))
        if debt.notna().any():
            # what a full collection would free at each point: the part of the line above it only cycles hold
            ax_numpy.plot(trial["sample"], debt / MB, linestyle="--", color=color_of[label],
                          alpha=style["alpha"], label=f"{label}: cycle debt" if repeat == 0 else None)
        if rss.notna().any():
            # Growth since the trial's own start: engines start from very
            # different interpreter footprints (PyTorch's is ~190 MB more).
            ax_rss.plot(trial["sample"], (rss - rss.dropna().iloc[0]) / MB, label=line_label, **style)
        if not sees_numpy or gc_events.empty:
            continue
        # A collection shows on the sample point that closed the interval it
        # fell in: the first reading after the drop.
        events = gc_events[gc_events["trial"] == trial["trial"].iloc[0]]
        sample_at = {(i, ph): n for n, i, ph in zip(trial["sample"], trial["iteration"], trial["phase"])}
        by_sample = trial.set_index("sample")["numpy_bytes"].astype("float64")
        for generation, group in events.groupby("generation"):
            xs = [sample_at[(i, ph)] for i, ph in zip(group["iteration"], group["phase"]) if (i, ph) in sample_at]
            if xs:
                legend = f"GC collection, gen {generation}" if generation not in marked_generations else None
                marked_generations.add(int(generation))
                ax_numpy.scatter(xs, by_sample.loc[xs] / MB, marker=GC_MARKERS.get(int(generation), "o"), s=70,
                                 facecolors="none", edgecolors="black", zorder=5, label=legend)
    ax_numpy.set_ylabel("numpy array bytes (MB, tracemalloc)")
    ax_rss.set_ylabel("RSS growth since start (MB, psutil)")
    ax_rss.set_xlabel("sample point (0 = start, then each sample point of each iteration in turn)")
    ax_numpy.set_title(f"{experiment.name}: {experiment.title}", fontsize=10)
    handles: dict[str, Any] = {}
    for ax in (ax_numpy, ax_rss):  # a variant without numpy figures has a line only below
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    ax_numpy.legend(handles.values(), handles.keys(), fontsize=8, loc="upper left")
    ax_numpy.grid(alpha=0.3)
    ax_rss.grid(alpha=0.3)
    if decimated:
        rows, drawn = max(decimated.values())
        ax_numpy.text(0.99, 0.02, f"{len(decimated)} trial(s) drawn from an envelope: the lowest and highest reading "
                      f"of each run of points ({drawn:,} of {rows:,} sample points for the longest)",
                      transform=ax_numpy.transAxes, ha="right", va="bottom", fontsize=7, color="0.3")
    fig.tight_layout()
    return fig


def summary_figure(experiment: Experiment, summary: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    swept = _swept(experiment, summary)
    rows = summary[summary["repeat"] == 0] if "repeat" in summary else summary
    labels = [_label(row, swept) for _, row in rows.iterrows()]
    positions = range(len(rows))
    for ax, (measured, expected, bound, title) in zip(
        axes,
        (
            ("numpy_bytes_final", "expected_numpy_bytes_final", "bound_numpy_bytes_final", "held at the end"),
            ("numpy_bytes_peak", "expected_numpy_bytes_peak", "bound_numpy_bytes_peak", "peak"),
        ),
    ):
        width = 0.4
        ax.bar([p - width / 2 for p in positions], _mb(rows[measured]), width, label="measured")
        ax.bar([p + width / 2 for p in positions], _mb(rows[expected]), width, label="expected (model)",
               alpha=0.6, hatch="//")
        if bound in rows and rows[bound].notna().any():
            # A bound is a ceiling, not a bar to match: drawn as a line over the trial.
            ax.hlines(_mb(rows[bound]), [p - width for p in positions], [p + width for p in positions],
                      colors="black", linestyles="dashed", label="upper bound (model)")
        ax.set_xticks(list(positions), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("numpy array bytes (MB)")
        ax.set_title(f"{experiment.name}: array bytes {title}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _numeric_swept(experiment: Experiment, summary: pd.DataFrame) -> list[str]:
    numeric = {p.name for p in experiment.params if p.type in (int, float)}
    return [name for name in _swept(experiment, summary) if name in numeric]


SWEEP_PANELS = (
    ("numpy_bytes_peak", "peak numpy array bytes", True),
    ("numpy_bytes_final", "numpy array bytes held at the end", True),
    ("gc_collections", "GC collections during the workload", False),
)


def sweep_figure(experiment: Experiment, summary: pd.DataFrame) -> Figure:
    """Metrics against the swept parameter with the most values, log axes."""
    rows = summary[(summary["status"] == "ok") & (summary["repeat"] == 0)]
    swept = _numeric_swept(experiment, rows)
    along = max(swept, key=lambda name: rows[name].nunique())
    others = [name for name in _swept(experiment, rows) if name != along]
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    variant_color = {v: colors[n % len(colors)] for n, v in enumerate(dict.fromkeys(rows["variant"]))}
    other_values = list(dict.fromkeys(rows[others].itertuples(index=False, name=None))) if others else [()]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    fig = Figure(figsize=(15, 4.8))
    axes = fig.subplots(1, len(SWEEP_PANELS))
    for ax, (metric, ylabel, log_y) in zip(axes, SWEEP_PANELS):
        for (variant, *values), line in rows.groupby(["variant", *others], sort=False):
            line = line.sort_values(along)
            key = tuple(values)
            marker = markers[other_values.index(key) % len(markers)] if others else "o"
            label = ", ".join([str(variant)] + [f"{n}={v}" for n, v in zip(others, values)])
            ax.plot(line[along], pd.to_numeric(line[metric], errors="coerce").astype("float64"), marker=marker,
                    color=variant_color[variant], label=label,
                    linestyle=["-", "--", ":", "-."][other_values.index(key) % 4] if others else "-")
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(along)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{experiment.name}: against {along}", fontsize=10)
    fig.tight_layout()
    return fig


def census_figure(experiment: Experiment, records: pd.DataFrame) -> Figure:
    """Objects of each type a workload's census counted, a bar per variant."""
    rows = records[records["repeat"] == 0] if "repeat" in records else records
    table = rows.pivot_table(index="object_type", columns="variant", values="count", aggfunc="sum", sort=False)
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots()
    width = 0.8 / max(1, len(table.columns))
    for n, variant in enumerate(table.columns):
        positions = [i + (n - (len(table.columns) - 1) / 2) * width for i in range(len(table))]
        bars = ax.bar(positions, table[variant], width, label=variant)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(table)), table.index)
    ax.set_ylabel("objects found by the census collection")
    ax.set_title(f"{experiment.name}: what one gc.collect() found, by type", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def provenance(meta: dict[str, Any]) -> str:
    """Where a run's figures came from, for a line under each of them."""
    numpy = (meta.get("versions") or {}).get("numpy")
    pythons = meta.get("trial_pythons") or [meta.get("python")]
    return (f"{meta.get('experiment')} run {meta.get('run_id')}: Python {', '.join(map(str, pythons))}, "
            f"numpy {numpy}, {meta.get('platform')}, {meta.get('cpu_count')} CPUs")


def figures(experiment: Experiment, tables: dict[str, pd.DataFrame], footer: str = "") -> dict[str, Figure]:
    found = _figures(experiment, tables)
    if footer:
        for fig in found.values():
            fig.text(0.005, 0.003, footer, fontsize=6.5, color="0.4", ha="left", va="bottom")
    return found


def _figures(experiment: Experiment, tables: dict[str, pd.DataFrame]) -> dict[str, Figure]:
    samples = tables["samples"]
    if samples.empty:
        return {}
    found = {
        "memory": memory_figure(experiment, samples, tables["gc_events"]),
        "summary": summary_figure(experiment, tables["summary"]),
    }
    if _numeric_swept(experiment, tables["summary"]):
        found["sweep"] = sweep_figure(experiment, tables["summary"])
    records = tables.get("records")
    if records is not None and {"object_type", "count"} <= set(records.columns) and len(records):
        found["census"] = census_figure(experiment, records)
    return found


def write_plots(run_dir: Path, experiment: Experiment, tables: dict[str, pd.DataFrame],
                footer: str = "") -> list[Path]:
    from harness.results import write_atomic

    written = []
    for name, fig in figures(experiment, tables, footer).items():
        png = io.BytesIO()
        fig.savefig(png, dpi=110, format="png")
        path = run_dir / f"{name}.png"
        write_atomic(path, png.getvalue())  # no half-written PNG, and no temporary left on a full disk
        written.append(path)
    return written
