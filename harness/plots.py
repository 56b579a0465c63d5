"""Plots of a run, built as matplotlib `Figure`s directly: no pyplot, no
backend chosen and no rcParams changed (a notebook's own `%matplotlib inline`
and `plt.show()` keep working after a run), no display needed; PNGs are
rendered by Agg on save. Each figure has one legend, under its title, and
the run's provenance in a line at its foot.

A variant has one look in every plot of a run -- one colour, one line style,
one marker; the built-in variants the same look in every run (strongref blue,
solid, hollow circles; weakref orange, dashed, squares; retain_grad green,
dotted, triangles; no_grad red, dash-dot, diamonds) -- and the first
variants draw the wider lines, so lines that coincide stay visible (the one
below shows around the dashes of the one on top). A sweep is drawn as small
multiples: a panel per value, or combination of values, of the swept
parameters (a grid of rows and columns when two are swept), titled with
them, a line or bar per variant in each -- never a legend entry per trial.
Repeats are the same line, paler (dots over the bar in summary.png).

memory.png    per panel, numpy-domain bytes (top: tracemalloc, exact) and RSS
              growth since the trial's start (below: the rss probe) against
              the iteration: n is the end of iteration n, 0 the start. A
              workload's other sample points in an iteration lie between n - 1
              and n (named in the axis label); points after the loop (exp16's
              "dropped", "census") at dotted lines named above the panel. On
              the numpy lines: each line's last reading written at its end; a
              peak that fell between two sample points (`numpy_bytes_peak`
              above the readings on both sides: a cap on a dotted stem between
              them, each variant's a little to one side so equal ones all
              show); each GC collection as a black hollow marker (its shape
              the generation) on the middle of the stretch of line where it
              fell, where the drop is; with the cycle_debt probe, the bytes
              only unreachable cycles hold, shaded. "n/a" where a variant's
              numpy bytes or RSS cannot be read (PyTorch's arrays), or a panel
              has no trial. strongref climbs a graph per iteration and drops
              where a collection frees its cycles; weakref is flat at one
              graph, its two-graph peaks capped above it.
timeline.png  with the sampled probe (timeline.csv): its RSS,
              polled every 5 ms, against seconds since the trial's start, as
              `mprof plot` draws it -- a line per trial; a bar along the bottom
              spans each trial's workload (its first to last sample point), and
              the GC collections are marked at the time of the sample point
              after each, the two clocks aligned by fitting the samples' RSS
              to the timeline's (or by the workload's end).
summary.png   per panel, a bar per variant for the numpy bytes held at the end
              and for the peak, its value written over it, against the
              analytic model: an exact prediction is a black line across the
              bar; an upper bound (strongref with the GC on) a dashed dark red
              line with a down triangle, written "≤ N (bound)" -- a ceiling,
              never a bar to match; "no model" where the model makes no claim,
              "n/a" (with the trial's status) where nothing was measured. A
              figure of 0 is written "0", so no panel is blank (exp16).
sweep.png     when a numeric parameter is swept (`--param size=1e2,1e3,1e4`):
              peak bytes, bytes held at the end and GC collections against it
              (log axes; symmetric log where some are 0), a line per variant,
              the model's figure as a cross (exact) or a hollow down triangle
              (bound); a column per value of the other swept parameters, or the
              three side by side when there is none.
census.png    when the workload recorded a census (`object_type`, `count`
              rows, e.g. exp16): objects of each type the collection found, a
              bar per variant with its count, a panel per swept value.

The run writes them at its end (`write_plots`, from the tables the run's
writer kept for them: a long trial's samples and timeline as envelopes);
`figures()` builds them for a notebook (`harness.load(path).figures()`).
"""
from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from harness.experiment import Experiment
from harness.table_writer import thin_timeline
from harness.tables import AFTER_LAST_SAMPLE

MB = 1e6
GC_MARKERS = {0: "v", 1: "s", 2: "D"}
# Matplotlib's tab10 and then tab20's paler halves: fixed, so a variant has its
# colour whatever style a notebook has set.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")
# (line style, line width, marker, marker size, hollow marker): the first
# variants draw wider lines and bigger, hollow markers, the later ones
# narrower dashed lines on top, so coinciding lines all show.
STYLES = (
    ("-", 2.8, "o", 7.5, True),
    ((0, (5, 2)), 2.0, "s", 5.0, False),
    ((0, (1.5, 1.5)), 1.8, "^", 5.0, False),
    ((0, (6, 2, 1.5, 2)), 1.4, "D", 3.5, False),
    ((0, (3, 1.5)), 1.2, "v", 4.0, False),
    ((0, (1, 3)), 1.2, "P", 4.5, False),
)
MODEL_COLOR = "black"
BOUND_COLOR = "#7a0019"
TEXT = "0.3"


# -- a variant's look -------------------------------------------------------

@dataclass(frozen=True)
class Look:
    color: str
    linestyle: Any
    linewidth: float
    marker: str
    markersize: float
    hollow: bool

    def line(self, markers: bool = True) -> dict[str, Any]:
        style: dict[str, Any] = {"color": self.color, "linestyle": self.linestyle, "linewidth": self.linewidth}
        if markers:
            style.update(marker=self.marker, markersize=self.markersize, markeredgecolor=self.color,
                         markerfacecolor="white" if self.hollow else self.color)
        return style


# The built-in variants keep their look from run to run (strongref is always
# blue and solid); any other variant takes the next free one.
KNOWN_VARIANTS = ("strongref", "weakref", "retain_grad", "no_grad", "torch", "torch_no_grad", "dezero_official",
                  "dezero_official_core", "dezero_official_no_grad")


class Palette:
    """One look per variant, the same in every figure of a run; iterated in
    the order the variants were first seen (the legends' order)."""

    def __init__(self, variants: Iterable[Any] = ()) -> None:
        self._looks: dict[str, Look] = {}
        self._slots: set[int] = set()
        for variant in variants:
            self[variant]

    def __getitem__(self, variant: Any) -> Look:
        name = str(variant)
        if name not in self._looks:
            if name in KNOWN_VARIANTS and KNOWN_VARIANTS.index(name) not in self._slots:
                slot = KNOWN_VARIANTS.index(name)
            else:
                slot = next(n for n in range(len(KNOWN_VARIANTS), 10_000) if n not in self._slots)
            self._slots.add(slot)
            self._looks[name] = Look(COLORS[slot % len(COLORS)], *STYLES[slot % len(STYLES)])
        return self._looks[name]

    def __iter__(self):
        return iter(self._looks)

    def rank(self, variant: Any) -> int:
        """The variant's place among the run's variants."""
        self[variant]
        return list(self._looks).index(str(variant))

    def handles(self, variants: Iterable[Any], markers: bool = True) -> list[Line2D]:
        return [Line2D([], [], label=str(v), **self[v].line(markers)) for v in dict.fromkeys(map(str, variants))]


def palette_of(*tables: pd.DataFrame | None) -> Palette:
    """The run's palette: variants in the order the summary (then the other tables) lists them."""
    variants: list[str] = []
    for table in tables:
        if table is not None and "variant" in table:
            variants += [str(v) for v in table["variant"].dropna()]
    return Palette(dict.fromkeys(variants))


# -- small multiples --------------------------------------------------------

def _swept(experiment: Experiment, table: pd.DataFrame) -> list[str]:
    names = [p.name for p in experiment.params if p.name in table]
    return [n for n in names if table[n].nunique(dropna=False) > 1]


def _norm(value: Any) -> str:
    """A parameter value as a facet key: 100, 100.0 and "100" are one; True and "true" too."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).lower()


def _sort_values(values: pd.Series) -> list[Any]:
    unique = list(dict.fromkeys(values.dropna()))
    try:
        numbers = [float(v) for v in unique]
    except (TypeError, ValueError):
        return unique
    return [v for _, v in sorted(zip(numbers, unique), key=lambda pair: pair[0])]


def _short(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(int(value)) >= 10_000:
        return f"{float(value):.0e}".replace("e+0", "e").replace("e+", "e")
    return str(value)


@dataclass
class Facets:
    """The panels of a figure: a panel per combination of the swept
    parameters' values (one panel when nothing is swept), laid out as a grid
    -- rows and columns by value when exactly two parameters are swept."""

    names: list[str]
    keys: list[tuple[str, ...]]
    titles: list[str]
    nrows: int
    ncols: int

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, table: pd.DataFrame | None, key: tuple[str, ...]) -> pd.DataFrame:
        if table is None:
            return pd.DataFrame()
        if not self.names or table.empty:
            return table
        if any(name not in table for name in self.names):
            return table.iloc[0:0]
        mask = np.ones(len(table), dtype=bool)
        for name, value in zip(self.names, key):
            column = table[name]
            names = {v: _norm(v) for v in pd.unique(column)}  # per distinct value, not per row
            mask &= column.map(names).to_numpy() == value
        return table[mask]

    def cell(self, n: int) -> tuple[int, int]:
        return divmod(n, self.ncols)


def facets_of(experiment: Experiment, table: pd.DataFrame, exclude: Sequence[str] = (),
              max_columns: int | None = None) -> Facets:
    names = [n for n in _swept(experiment, table) if n not in exclude]
    if not names:
        return Facets([], [()], [""], 1, 1)
    orders = {n: _sort_values(table[n]) for n in names}
    index = {n: {_norm(v): k for k, v in enumerate(orders[n])} for n in names}
    shown = {n: {_norm(v): v for v in orders[n]} for n in names}
    keys = sorted(dict.fromkeys(tuple(_norm(v) for v in row) for row in table[names].itertuples(index=False)),
                  key=lambda key: tuple(index[n].get(v, math.inf) for n, v in zip(names, key)))
    titles = [", ".join(f"{n}={_short(shown[n].get(v, v))}" for n, v in zip(names, key)) for key in keys]
    count = len(keys)
    if len(names) == 2 and count == len(orders[names[0]]) * len(orders[names[1]]) and len(orders[names[1]]) <= 6:
        nrows, ncols = len(orders[names[0]]), len(orders[names[1]])
    else:
        ncols = count if count <= 3 else math.ceil(math.sqrt(count))
        if max_columns:
            ncols = min(ncols, max_columns)
        nrows = math.ceil(count / ncols)
    return Facets(names, keys, titles, nrows, ncols)


def _figure(width: float, height: float) -> Figure:
    # Constrained layout (no rect: with one it lets an outside legend cover the panels' titles).
    fig = Figure(figsize=(min(width, 26.0), min(height, 30.0)), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.05, w_pad=0.05)
    return fig


def _legend(fig: Figure, handles: list[Any], title: str) -> None:
    """The figure's one legend, above its panels, under its title (the legend's
    own: constrained layout stacks a suptitle and an outside legend on each other)."""
    if not handles:
        fig.suptitle(title, fontsize=10)
        return
    # As many columns as fit the width (an entry: its handle and spacing, then ~0.075 in a character of its text;
    # matplotlib fills the columns top to bottom).
    widths = [0.75 + 0.075 * len(str(h.get_label())) for h in handles]
    columns = 1
    for count in range(len(handles), 0, -1):
        # matplotlib gives the first len % count columns one entry more than the rest
        sizes = [len(handles) // count + (c < len(handles) % count) for c in range(count)]
        starts = [sum(sizes[:c]) for c in range(count)]
        if sum(max(widths[a:a + n], default=0) for a, n in zip(starts, sizes)) <= fig.get_figwidth() - 0.4:
            columns = count
            break
    fig.legend(handles=handles, loc="outside upper center", ncols=columns, fontsize=8, frameon=False,
               title=title, title_fontsize=10)


def _note(ax: Any, text: str, where: str = "lower right") -> None:
    x, ha = (0.98, "right") if "right" in where else (0.02, "left")
    y, va = (0.03, "bottom") if "lower" in where else (0.97, "top")
    if where == "center":
        x, ha, y, va = 0.5, "center", 0.5, "center"
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7.5, color=TEXT,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.85})


# -- numbers ----------------------------------------------------------------

def _num(values: Any) -> np.ndarray:
    """Plain floats (a nullable integer's <NA> becomes NaN, which matplotlib skips)."""
    return pd.to_numeric(pd.Series(values), errors="coerce").astype("float64").to_numpy()


def _mb(values: Any) -> np.ndarray:
    return _num(values) / MB


def _bytes_text(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if value == 0:
        return "0"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.3g} {unit}" if scaled < 100 else f"{scaled:.0f} {unit}"
    return f"{value:.0f} B"


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    return _num(table[name]) if name in table else np.full(len(table), np.nan)


# -- memory.png -------------------------------------------------------------

def positions(trial: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """x of each of a trial's sample rows (sorted by `sample`): the end of
    iteration i at i + 1 (the start at 0), a workload's other points of an
    iteration evenly before its end, points after the loop's last end half a
    step apart after it. (False, sample numbers) for a trial with no
    iteration ends. (Points after the loop are spaced wider on a long loop, so
    their names can be read.)"""
    samples = _num(trial["sample"]) if "sample" in trial else np.arange(len(trial), dtype=float)
    if "iteration" not in trial or "phase" not in trial:
        return samples, False
    iterations = _num(trial["iteration"])
    phases = trial["phase"].astype(str).to_numpy()
    ends = phases == "end"
    if not ends.any():
        return samples, False
    end_sample = dict(zip(iterations[ends], samples[ends]))
    offsets: dict[str, list[float]] = {}
    for phase, iteration, sample in zip(phases, iterations, samples):
        if phase not in ("start", "end") and iteration in end_sample:
            offsets.setdefault(phase, []).append(sample - end_sample[iteration])
    order = sorted(offsets, key=lambda p: float(np.median(offsets[p])))
    before = [p for p in order if np.median(offsets[p]) < 0]
    after = [p for p in order if np.median(offsets[p]) > 0]
    step = {p: (k + 1) / (len(before) + 1) for k, p in enumerate(before)}
    step.update({"end": 1.0})
    gap = max(1.0, (np.nanmax(iterations) + 1) / 20)
    step.update({p: 1.0 + gap * (k + 1) for k, p in enumerate(after)})
    xs = np.array([0.0 if phase == "start" else iteration + step.get(phase, 1.0)
                   for phase, iteration in zip(phases, iterations)])
    return xs, True


def _phase_names(samples: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(phases sampled inside every iteration besides its end, phases sampled once per trial after the loop)."""
    if "phase" not in samples or samples.empty:
        return [], []
    counts = samples.groupby("trial")["phase"].value_counts().unstack(fill_value=0) if "trial" in samples else \
        samples["phase"].value_counts().to_frame().T
    within, once = [], []
    for phase in counts.columns:
        if phase in ("start", "end"):
            continue
        (once if counts[phase].max() <= 1 else within).append(str(phase))
    return within, once


def memory_figure(experiment: Experiment, samples: pd.DataFrame, gc_events: pd.DataFrame,
                  summary: pd.DataFrame | None = None, palette: Palette | None = None) -> Figure:
    palette = palette or palette_of(summary, samples)
    layout_table = summary if summary is not None and not summary.empty else samples
    facets = facets_of(experiment, layout_table)
    width = 11.0 if len(facets) == 1 else 4.6 * facets.ncols + 0.8
    height = 7.5 if len(facets) == 1 else 3.7 * facets.nrows + 1.2
    fig = _figure(width, height)
    grid = fig.add_gridspec(2 * facets.nrows, facets.ncols, height_ratios=[1.7, 1.0] * facets.nrows)
    decimated = samples.attrs.get("decimated") or {}  # trial -> (rows, rows drawn): see harness.table_writer
    within, once = _phase_names(samples)
    seen = {"gc": set(), "peak": False, "debt": False}
    iteration_axis = True
    # One loop under several interpreters (--python): one scale, so the panels compare at a glance.
    shared: dict[str, Any] = {"numpy": None, "rss": None} if facets.names == ["interpreter"] else {}
    for n, key in enumerate(facets.keys):
        row, col = facets.cell(n)
        ax_numpy = fig.add_subplot(grid[2 * row, col], sharey=shared.get("numpy"))
        ax_rss = fig.add_subplot(grid[2 * row + 1, col], sharex=ax_numpy, sharey=shared.get("rss"))
        if shared and shared["numpy"] is None:
            shared.update(numpy=ax_numpy, rss=ax_rss)
        ax_numpy.tick_params(labelbottom=False)
        rows = facets.select(samples, key)
        events = facets.select(gc_events, key) if gc_events is not None and len(gc_events) else pd.DataFrame()
        iteration_axis &= _draw_memory_panel(ax_numpy, ax_rss, rows, events, palette, seen, once,
                                             facets.select(summary, key) if summary is not None else None)
        if facets.titles[n]:
            ax_numpy.set_title(facets.titles[n], fontsize=9)
        ax_numpy.set_ylabel("numpy array bytes (MB)" if len(facets) > 1 else
                            "numpy array bytes (MB, tracemalloc)", fontsize=8.5)
        ax_rss.set_ylabel("RSS growth (MB)" if len(facets) > 1 else "RSS growth since start (MB, psutil)",
                          fontsize=8.5)
        for ax in (ax_numpy, ax_rss):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        if row == facets.nrows - 1 or n + facets.ncols >= len(facets):
            ax_rss.set_xlabel(_x_label(iteration_axis, within), fontsize=8.5)
    if shared:  # each panel fitted its own data; the shared scale must hold every panel's
        for first in (shared["numpy"], shared["rss"]):
            siblings = [ax for ax in fig.axes if first.get_shared_y_axes().joined(first, ax)]
            low = min(ax.dataLim.y0 for ax in siblings)
            high = max(max(ax.dataLim.y1, ax.get_ylim()[1]) for ax in siblings)
            first.set_ylim(min(low, first.get_ylim()[0]), high + 0.04 * (high - low))
    title = f"{experiment.name}: {experiment.title}"
    handles = palette.handles(v for v in palette if v in set(samples.get("variant", pd.Series(dtype=str)).astype(str)))
    handles += [Line2D([], [], linestyle="none", marker=GC_MARKERS.get(g, "o"), markersize=8,
                       markerfacecolor="none", markeredgecolor="black", label=f"GC collection, gen {g}")
                for g in sorted(seen["gc"])]
    if seen["peak"]:
        handles.append(Line2D([], [], linestyle=":", color="0.3", marker="_", markersize=7, markeredgewidth=1.6,
                              label="peak between two sample points"))
    if seen["debt"]:
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="0.5", alpha=0.25, label="cycle debt (a collection would free it)"))
    _legend(fig, handles, title)
    if decimated:
        rows_, drawn = max(decimated.values())
        _note(fig.axes[0], f"{len(decimated)} trial(s) drawn from an envelope: the lowest and highest reading "
              f"of each run of points\n({drawn:,} of {rows_:,} sample points for the longest)", "upper left")
    return fig


def _x_label(iteration_axis: bool, within: list[str]) -> str:
    if not iteration_axis:
        return "sample point"
    if within:
        return f"iteration (n: its end; between n - 1 and n: {', '.join(within[:4])})"
    return "iteration"


def _draw_memory_panel(ax_numpy: Any, ax_rss: Any, samples: pd.DataFrame, gc_events: pd.DataFrame,
                       palette: Palette, seen: dict[str, Any], once: list[str],
                       summary: pd.DataFrame | None) -> bool:
    """One panel's trials; True when its x axis is iterations."""
    if samples.empty:
        failed = summary[summary["status"] != "ok"] if summary is not None and "status" in summary else None
        why = ", ".join(f"{r.variant}: {r.status}" for r in failed.itertuples()) if failed is not None and len(
            failed) else "no sample rows"
        for ax in (ax_numpy, ax_rss):
            _note(ax, f"n/a ({why})", "center")
        return True
    iteration_axis = True
    blind_numpy: list[str] = []
    blind_rss: list[str] = []
    marks: dict[str, float] = {}
    ends: list[tuple[float, float, str, str]] = []
    for _, trial in samples.groupby("trial", sort=False):
        trial = trial.sort_values("sample") if "sample" in trial else trial
        variant = str(trial["variant"].iloc[0])
        repeat = int(trial["repeat"].iloc[0]) if "repeat" in trial else 0
        look = palette[variant]
        xs, by_iteration = positions(trial)
        iteration_axis &= by_iteration
        numpy_mb = _mb(trial["numpy_bytes"]) if "numpy_bytes" in trial else np.full(len(trial), np.nan)
        rss = _column(trial, "rss_bytes")
        alpha = 1.0 if repeat == 0 else 0.35
        every = max(1, len(xs) // 25)
        style = {**look.line(), "alpha": alpha, "markevery": (palette.rank(variant) % every, every)
                 if every > 1 else None}
        z = 2 + palette.rank(variant) * 0.01
        sees_numpy = bool(np.isfinite(numpy_mb).any())
        if sees_numpy:
            ax_numpy.plot(xs, numpy_mb, zorder=z, **style)
            shift = (palette.rank(variant) - (len(list(palette)) - 1) / 2) * 0.08
            _between_sample_peaks(ax_numpy, trial, xs, numpy_mb, look, alpha, seen, shift)
            last = np.flatnonzero(np.isfinite(numpy_mb))[-1]
            if repeat == 0:
                ends.append((float(xs[last]), float(numpy_mb[last]), _bytes_text(numpy_mb[last] * MB), look.color))
        elif repeat == 0:
            blind_numpy.append(variant)
        debt = _mb(trial["cycle_debt_bytes"]) if "cycle_debt_bytes" in trial else np.full(len(trial), np.nan)
        if np.isfinite(debt).any():
            ax_numpy.fill_between(xs, 0, np.nan_to_num(debt), color=look.color, alpha=0.18 * alpha, linewidth=0)
            seen["debt"] = True
        if np.isfinite(rss).any():
            first = rss[np.isfinite(rss)][0]
            # Growth since the trial's own start: engines start from very
            # different interpreter footprints (PyTorch's is ~190 MB more).
            ax_rss.plot(xs, (rss - first) / MB, zorder=z, **style)
        elif repeat == 0:
            blind_rss.append(variant)
        if gc_events is not None and len(gc_events) and "trial" in gc_events:
            events = gc_events[gc_events["trial"] == trial["trial"].iloc[0]]
            on = ax_numpy if sees_numpy else ax_rss
            values = numpy_mb if sees_numpy else (rss - (rss[np.isfinite(rss)][0] if np.isfinite(rss).any()
                                                         else 0)) / MB
            _gc_marks(on, trial, events, xs, values, seen)
        if by_iteration and len(once):
            for phase in once:
                at = xs[trial["phase"].astype(str).to_numpy() == phase]
                if len(at):
                    marks.setdefault(phase, float(at[0]))
    for x in marks.values():
        for ax in (ax_numpy, ax_rss):
            ax.axvline(x, color="0.55", linestyle=":", linewidth=0.9, zorder=1)
    if marks:  # the points after the loop, named on a scale above the panel
        top = ax_numpy.secondary_xaxis("top")
        top.set_xticks(list(marks.values()), list(marks), fontsize=7, color=TEXT)
        top.tick_params(length=3, pad=1)
    _end_labels(ax_numpy, ends)
    if blind_numpy:
        _note(ax_numpy, "numpy bytes n/a: " + ", ".join(dict.fromkeys(blind_numpy)) + " (not seen by tracemalloc)",
              "lower right" if len(blind_numpy) < samples["variant"].nunique() else "center")
    if blind_rss:
        every_variant = len(set(blind_rss)) == samples["variant"].nunique()
        _note(ax_rss, "RSS n/a (the rss probe was off)" if every_variant else
              "RSS n/a: " + ", ".join(dict.fromkeys(blind_rss)), "center" if every_variant else "lower right")
    return iteration_axis


def _between_sample_peaks(ax: Any, trial: pd.DataFrame, xs: np.ndarray, numpy_mb: np.ndarray, look: Look,
                          alpha: float, seen: dict[str, Any], shift: float = 0.0) -> None:
    """A peak the samples do not show: `numpy_bytes_peak` (the highest since the
    previous sample point) above the readings at both ends of its interval,
    drawn between them -- a variant's `shift` (a fraction of the interval) to
    one side, so two variants' equal peaks both show."""
    if "numpy_bytes_peak" not in trial or len(xs) < 2:
        return
    peak = _mb(trial["numpy_bytes_peak"])[1:]
    lower = np.fmax(numpy_mb[:-1], numpy_mb[1:])
    hidden = np.isfinite(peak) & np.isfinite(lower) & (peak > lower * (1 + 1e-9) + 1e-12)
    if not hidden.any():
        return
    mid = (xs[:-1] + (0.5 + shift) * (xs[1:] - xs[:-1]))[hidden]
    few = hidden.sum() <= 60  # a stem from the line up to each; past that many, smaller caps alone
    if few:
        ax.vlines(mid, lower[hidden], peak[hidden], colors=look.color, linestyles=":", linewidth=0.9, alpha=alpha)
    ax.plot(mid, peak[hidden], linestyle="none", marker="_", markersize=7 if few else 4,
            markeredgewidth=1.6 if few else 1.1, color=look.color, alpha=alpha, zorder=4)
    seen["peak"] = True


def _end_labels(ax: Any, ends: list[tuple[float, float, str, str]]) -> None:
    """Each line's last reading written at its end, in its colour, labels pushed
    apart where lines end close together (a flat line far below another stays legible)."""
    if not ends:
        return
    ax.autoscale_view()
    low, high = ax.get_ylim()
    left, right = ax.get_xlim()
    gap = (high - low) * 0.07
    placed: list[float] = []
    for x, y, text, color in sorted(ends, key=lambda e: e[1]):
        at = y if not placed or y >= placed[-1] + gap else placed[-1] + gap
        placed.append(at)
        ax.annotate(text, (x, y), xytext=(x + (right - left) * 0.015, at), textcoords="data", fontsize=7,
                    color=color, ha="left", va="center", annotation_clip=False,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    ax.set_xlim(left, right + (right - left) * 0.1)
    ax.set_ylim(low, max(high, placed[-1] + gap / 2))


def _gc_marks(ax: Any, trial: pd.DataFrame, events: pd.DataFrame, xs: np.ndarray, values: np.ndarray,
              seen: dict[str, Any]) -> None:
    """A collection falls in the interval its row's sample point closes: its
    marker goes on the middle of that stretch of line, where the drop is."""
    if events.empty:
        return
    where = {(int(i), str(p)): k for k, (i, p) in enumerate(zip(_num(trial["iteration"]), trial["phase"]))}
    step = float(np.median(np.diff(xs))) if len(xs) > 1 else 1.0
    for generation, group in events.groupby("generation"):
        points_x, points_y = [], []
        for iteration, phase in zip(_num(group["iteration"]), group["phase"].astype(str)):
            k = where.get((int(iteration), phase))
            if phase == AFTER_LAST_SAMPLE and len(xs):  # after the workload's last sample point
                points_x.append(xs[-1] + step / 2)
                points_y.append(values[-1])
            elif k is not None and k > 0:
                points_x.append((xs[k - 1] + xs[k]) / 2)
                points_y.append((values[k - 1] + values[k]) / 2)
        if points_x:
            ax.plot(points_x, points_y, linestyle="none", marker=GC_MARKERS.get(int(generation), "o"),
                    markersize=8, markerfacecolor="none", markeredgecolor="black", zorder=5)
            seen["gc"].add(int(generation))


# -- timeline.png -----------------------------------------------------------

def _clock_offset(timeline: pd.DataFrame, trial: pd.DataFrame) -> float:
    """Seconds to add to a sample point's `t_s` (perf_counter from the start
    sample) to put it on the timeline's clock (the sampled probe's, from just
    before the workload): the workload's end at the timeline's, then, where the samples read
    RSS, the shift within 60 ms of that at which the timeline fits them best."""
    t_line, rss_line = _num(timeline["t_s"]), _num(timeline["rss_bytes"])
    t_samples = _column(trial, "t_s")
    if not np.isfinite(t_samples).any() or not len(t_line):
        return 0.0
    guess = float(np.nanmax(t_line) - np.nanmax(t_samples))
    rss = _column(trial, "rss_bytes")
    ok = np.isfinite(rss) & np.isfinite(t_samples)
    if ok.sum() < 3 or np.ptp(rss[ok]) == 0:
        return max(guess, 0.0)
    order = np.argsort(t_line)
    candidates = guess + np.arange(-0.06, 0.0605, 0.001)
    errors = [np.mean(np.abs(np.interp(t_samples[ok] + c, t_line[order], rss_line[order]) - rss[ok]))
              for c in candidates]
    best = float(candidates[int(np.argmin(errors))])
    return best if np.min(errors) < np.interp(guess, candidates, errors) else guess


def timeline_figure(experiment: Experiment, timeline: pd.DataFrame, samples: pd.DataFrame | None = None,
                    gc_events: pd.DataFrame | None = None, summary: pd.DataFrame | None = None,
                    palette: Palette | None = None) -> Figure:
    """The sampled probe's RSS over time, as `mprof plot` draws it: a line per trial."""
    palette = palette or palette_of(summary, timeline)
    facets = facets_of(experiment, summary if summary is not None and not summary.empty else timeline)
    width = 11.0 if len(facets) == 1 else 4.6 * facets.ncols + 0.8
    height = 5.2 if len(facets) == 1 else 2.9 * facets.nrows + 1.2
    fig = _figure(width, height)
    axes = fig.subplots(facets.nrows, facets.ncols, squeeze=False)
    generations: set[int] = set()
    spans = False
    for n, key in enumerate(facets.keys):
        ax = axes.flat[n]
        rows = facets.select(timeline, key)
        if rows.empty:
            _note(ax, "n/a (no timeline: the sampled probe was off or the trial failed)", "center")
        below = blended_transform_factory(ax.transData, ax.transAxes)
        for k, (trial_id, points) in enumerate(rows.groupby("trial", sort=False)):
            points = thin_timeline(points.sort_values("t_s"))
            variant = str(points["variant"].iloc[0])
            repeat = int(points["repeat"].iloc[0]) if "repeat" in points else 0
            t, rss = _num(points["t_s"]), _mb(points["rss_bytes"])
            every = max(1, len(t) // 25)
            ax.plot(t, rss, alpha=1.0 if repeat == 0 else 0.35, markevery=(palette.rank(variant) % every,
                                                                           every),
                    **palette[variant].line())
            if samples is None or samples.empty or "trial" not in samples or "t_s" not in samples:
                continue
            trial = samples[samples["trial"] == trial_id]
            if trial.empty:
                continue
            offset = _clock_offset(points, trial)
            # the workload, from its start sample point to its last, on the poll's clock: a bar along the bottom
            sampled = _column(trial, "t_s")
            ax.plot([np.nanmin(sampled) + offset, np.nanmax(sampled) + offset], [0.012 + 0.014 * k] * 2,
                    transform=below, color=palette[variant].color, linewidth=3, solid_capstyle="butt",
                    alpha=1.0 if repeat == 0 else 0.35)
            spans = True
            events = gc_events[gc_events["trial"] == trial_id] if gc_events is not None and len(gc_events) \
                else pd.DataFrame()
            if events.empty:
                continue
            at = {(int(i), str(p)): s for i, p, s in zip(_num(trial["iteration"]), trial["phase"].astype(str),
                                                         _column(trial, "t_s"))}
            for generation, group in events.groupby("generation"):
                times = [at[(int(i), str(p))] + offset for i, p in zip(_num(group["iteration"]), group["phase"])
                         if (int(i), str(p)) in at]
                times = [x for x in times if np.isfinite(x)]
                if times:
                    ax.plot(times, np.interp(times, t, rss), linestyle="none",
                            marker=GC_MARKERS.get(int(generation), "o"), markersize=8, markerfacecolor="none",
                            markeredgecolor="black", zorder=5)
                    generations.add(int(generation))
        if spans and len(rows):  # room under the lines for the workload bars
            band = 0.02 + 0.014 * rows["trial"].nunique()
            low, high = ax.get_ylim()
            ax.set_ylim(low - band * (high - low) / (1 - band), high)
        if facets.titles[n]:
            ax.set_title(facets.titles[n], fontsize=9)
        ax.set_xlabel("time since the trial's start (s)", fontsize=8.5)
        ax.set_ylabel("RSS (MB, sampled)", fontsize=8.5)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(facets):]:
        ax.remove()
    handles = palette.handles(v for v in palette if v in set(timeline["variant"].astype(str)))
    handles += [Line2D([], [], linestyle="none", marker=GC_MARKERS.get(g, "o"), markersize=8, markerfacecolor="none",
                       markeredgecolor="black", label=f"GC collection, gen {g}")
                for g in sorted(generations)]
    if spans:
        handles.append(Line2D([], [], color="0.4", linewidth=3, solid_capstyle="butt",
                              label="workload (first to last sample point)"))
    _legend(fig, handles, f"{experiment.name}: RSS over time, polled every 5 ms (mprof-style)")
    return fig


# -- summary.png ------------------------------------------------------------

SUMMARY_METRICS = (
    ("numpy_bytes_final", "expected_numpy_bytes_final", "bound_numpy_bytes_final", "held at the end"),
    ("numpy_bytes_peak", "expected_numpy_bytes_peak", "bound_numpy_bytes_peak", "peak"),
)


def summary_figure(experiment: Experiment, summary: pd.DataFrame, palette: Palette | None = None) -> Figure:
    """Per panel (a swept value), a bar per variant for the bytes held at the end and at the peak, beside the model."""
    palette = palette or palette_of(summary)
    facets = facets_of(experiment, summary)
    variants = [v for v in palette if v in set(summary["variant"].astype(str))]
    width = max(7.5, 1.2 + 1.3 * len(variants) * 2) if len(facets) == 1 else (1.0 + 0.5 * len(variants)) * 2 * \
        facets.ncols + 1.0
    height = 5.0 if len(facets) == 1 else 3.2 * facets.nrows + 1.2
    fig = _figure(width, height)
    axes = fig.subplots(facets.nrows, facets.ncols, squeeze=False)
    kinds: set[str] = set()
    for n, key in enumerate(facets.keys):
        ax = axes.flat[n]
        kinds |= _draw_summary_panel(ax, facets.select(summary, key), variants, palette, small=len(facets) > 1)
        if facets.titles[n]:
            ax.set_title(facets.titles[n], fontsize=9)
    for ax in list(axes.flat)[len(facets):]:
        ax.remove()
    handles: list[Any] = palette.handles(variants, markers=False)
    handles = [Line2D([], [], color=h.get_color(), linewidth=8, label=h.get_label()) for h in handles]
    if "exact" in kinds:
        handles.append(Line2D([], [], color=MODEL_COLOR, linewidth=2.2, label="model: expected (exact)"))
    if "bound" in kinds:
        handles.append(Line2D([], [], color=BOUND_COLOR, linewidth=1.6, linestyle="--", marker="v", markersize=6,
                              label="model: upper bound (measured \u2264 bound)"))
    if "repeats" in kinds:
        handles.append(Line2D([], [], color="black", linestyle="none", marker="o", markersize=3,
                              label="each repeat (bar: their median)"))
    _legend(fig, handles, f"{experiment.name}: numpy array bytes held at the end and at the peak, measured "
            "and modelled")
    return fig


def _draw_summary_panel(ax: Any, rows: pd.DataFrame, variants: list[str], palette: Palette, small: bool) -> set[str]:
    kinds: set[str] = set()
    count = max(1, len(variants))
    width = 0.8 / count
    top = 0.0
    labels: list[tuple[float, float, str]] = []
    for group, (measured, expected, bound, _title) in enumerate(SUMMARY_METRICS):
        for k, variant in enumerate(variants):
            x = group + (k - (count - 1) / 2) * width
            trials = rows[rows["variant"].astype(str) == variant]
            if trials.empty:
                continue
            ok = trials[trials["status"] == "ok"] if "status" in trials else trials
            values = _column(ok, measured)
            values = values[np.isfinite(values)]
            height = float(np.median(values)) if len(values) else np.nan
            model, limit = _column(trials, expected), _column(trials, bound)
            model = model[np.isfinite(model)]
            limit = limit[np.isfinite(limit)]
            if np.isfinite(height):
                ax.bar(x, height / MB, width * 0.92, color=palette[variant].color, edgecolor="white", linewidth=0.5)
                top = max(top, height)
                if len(values) > 1:
                    ax.plot(np.full(len(values), x), values / MB, linestyle="none", marker="o", markersize=2.5,
                            color="black", zorder=4)
                    kinds.add("repeats")
            if len(model):
                ax.hlines(model[0] / MB, x - width * 0.48, x + width * 0.48, colors=MODEL_COLOR, linewidth=2.2,
                          zorder=5)
                top = max(top, model[0])
                kinds.add("exact")
            elif len(limit):
                ax.hlines(limit[0] / MB, x - width * 0.48, x + width * 0.48, colors=BOUND_COLOR, linewidth=1.6,
                          linestyles="dashed", zorder=5)
                ax.plot(x, limit[0] / MB, marker="v", markersize=6, color=BOUND_COLOR, linestyle="none", zorder=6)
                top = max(top, limit[0])
                kinds.add("bound")
            text = _bytes_text(height) if np.isfinite(height) else _why_missing(trials)
            if not len(model) and not len(limit):
                text += "\nno model"
            elif len(limit) and not len(model):
                text += f"\n\u2264 {_bytes_text(limit[0])} (bound)"
            above = max(height if np.isfinite(height) else 0.0, limit[0] if len(limit) and not len(model) else 0.0)
            labels.append((x, above, text, bool(len(limit) and not len(model))))
    scale = top / MB if top > 0 else 1.0
    for x, above, text, bound_marker in labels:
        ax.annotate(text, (x, above / MB), xytext=(0, 6 if bound_marker else 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=6.5 if small else 7.5, color="0.15", linespacing=1.0)
    ax.set_ylim(0, scale * 1.22)
    ax.set_xticks([0, 1], [m[3] for m in SUMMARY_METRICS], fontsize=8.5)
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel("numpy array bytes (MB)", fontsize=8.5)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    if rows.empty:
        _note(ax, "n/a (no trial)", "center")
    return kinds


def _why_missing(trials: pd.DataFrame) -> str:
    statuses = [str(s) for s in trials.get("status", pd.Series(dtype=str)).dropna() if str(s) != "ok"]
    return "n/a" + (f" ({statuses[0]})" if statuses else "")


# -- sweep.png --------------------------------------------------------------

def _numeric_swept(experiment: Experiment, summary: pd.DataFrame) -> list[str]:
    numeric = {p.name for p in experiment.params if p.type in (int, float)}
    return [name for name in _swept(experiment, summary) if name in numeric]


SWEEP_PANELS = (
    ("numpy_bytes_peak", "expected_numpy_bytes_peak", "bound_numpy_bytes_peak", "peak numpy array bytes (bytes)"),
    ("numpy_bytes_final", "expected_numpy_bytes_final", "bound_numpy_bytes_final",
     "numpy array bytes held at the end (bytes)"),
    ("gc_collections", None, None, "GC collections during the workload"),
)


def _scale(ax: Any, values: np.ndarray, axis: str = "y") -> None:
    """Log where every value is positive; symmetric log (linear near 0) where some are 0."""
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if len(positive) and len(positive) == len(finite) and positive.max() / positive.min() > 20:
        setter("log")
    elif len(positive) and positive.max() / positive.min() > 20:
        setter("symlog", linthresh=float(positive.min()))


def sweep_figure(experiment: Experiment, summary: pd.DataFrame, palette: Palette | None = None) -> Figure:
    """Metrics (rows) against the numeric swept parameter with the most values,
    a column per value of the other swept parameters."""
    palette = palette or palette_of(summary)
    rows = summary[summary["status"] == "ok"] if "status" in summary else summary
    swept = _numeric_swept(experiment, summary)
    along = max(swept, key=lambda name: summary[name].nunique())
    facets = facets_of(experiment, summary, exclude=[along])
    columns = len(facets)
    across = columns == 1  # one panel per metric, side by side; else a row per metric, a column per value
    if across:
        fig = _figure(15.0, 5.2)
        axes = fig.subplots(1, len(SWEEP_PANELS), squeeze=False).T
    else:
        fig = _figure(4.4 * columns + 0.8, 3.0 * len(SWEEP_PANELS) + 1.2)
        axes = fig.subplots(len(SWEEP_PANELS), columns, squeeze=False, sharex=True)
    variants = [v for v in palette if v in set(summary["variant"].astype(str))]
    model_kinds: set[str] = set()
    for c, key in enumerate(facets.keys):
        part = facets.select(rows, key)
        for r, (metric, expected, bound, label) in enumerate(SWEEP_PANELS):
            ax = axes[r, c]
            missing: list[str] = []
            drawn: list[float] = []
            for variant in variants:
                line = part[part["variant"].astype(str) == variant]
                if line.empty:
                    continue
                xs = _column(line, along)
                ys = _column(line, metric)
                table = pd.DataFrame({"x": xs, "y": ys}).groupby("x", sort=True)["y"].median()
                missing += [f"{variant} at {_short(x)}" for x, y in table.items() if not np.isfinite(y)]
                ax.plot(table.index, table.to_numpy(), **palette[variant].line())
                drawn += list(table.to_numpy())
                if len(line) > len(table):
                    ax.plot(xs, ys, linestyle="none", marker="o", markersize=2.5, color=palette[variant].color,
                            alpha=0.6)
                for column, marker, kind in ((expected, "x", "exact"), (bound, "v", "bound")):
                    if column is None or column not in line:
                        continue
                    model = pd.DataFrame({"x": xs, "y": _column(line, column)}).dropna().groupby("x")["y"].first()
                    if len(model):
                        ax.plot(model.index, model.to_numpy(), linestyle="none", marker=marker, markersize=7,
                                color=MODEL_COLOR if kind == "exact" else BOUND_COLOR,
                                markerfacecolor="none" if kind == "bound" else None, zorder=5)
                        drawn += list(model.to_numpy())
                        model_kinds.add(kind)
            values = np.array(drawn, dtype=float)
            if not np.isfinite(values).any():
                _note(ax, "n/a" + (" (the gc probe was off)" if metric.startswith("gc_") else ""), "center")
            elif missing:
                _note(ax, "n/a: " + "; ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3
                                                                else ""), "lower right")
            _scale(ax, values)
            _scale(ax, _column(summary, along), axis="x")
            if c == 0:
                ax.set_ylabel(label, fontsize=8.5)
            if r == 0 and facets.titles[c]:
                ax.set_title(facets.titles[c], fontsize=9)
            if across or r == len(SWEEP_PANELS) - 1:
                ax.set_xlabel(along, fontsize=8.5)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.35, which="major")
            ax.grid(alpha=0.12, which="minor")
    handles: list[Any] = palette.handles(variants)
    if "exact" in model_kinds:
        handles.append(Line2D([], [], linestyle="none", marker="x", markersize=7, color=MODEL_COLOR,
                              label="model: expected (exact)"))
    if "bound" in model_kinds:
        handles.append(Line2D([], [], linestyle="none", marker="v", markersize=7, color=BOUND_COLOR,
                              markerfacecolor="none", label="model: upper bound"))
    _legend(fig, handles, f"{experiment.name}: against {along}"
            + (f", a column per {', '.join(facets.names)}" if facets.names else ""))
    return fig


# -- census.png -------------------------------------------------------------

def census_figure(experiment: Experiment, records: pd.DataFrame, summary: pd.DataFrame | None = None,
                  palette: Palette | None = None) -> Figure:
    """Objects of each type a workload's census counted, a bar per variant, a panel per swept value."""
    palette = palette or palette_of(summary, records)
    records = records[records["repeat"] == 0] if "repeat" in records else records
    facets = facets_of(experiment, summary if summary is not None and not summary.empty else records)
    types = list(dict.fromkeys(records["object_type"].astype(str)))
    variants = [v for v in palette if v in set(records["variant"].astype(str))]
    single = len(facets) == 1
    fig = _figure(max(9.0, 1.2 * len(types) + 2) if single else (0.9 * len(types) + 1.2) * facets.ncols,
                  4.8 if single else 3.0 * facets.nrows + 1.2)
    axes = fig.subplots(facets.nrows, facets.ncols, squeeze=False)
    width = 0.8 / max(1, len(variants))
    for n, key in enumerate(facets.keys):
        ax = axes.flat[n]
        rows = facets.select(records, key)
        table = rows.assign(object_type=rows["object_type"].astype(str), variant=rows["variant"].astype(str),
                            count=_column(rows, "count")).pivot_table(
            index="object_type", columns="variant", values="count", aggfunc="sum").reindex(index=types)
        for k, variant in enumerate(variants):
            positions = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(types))]
            heights = table[variant].to_numpy() if variant in table else np.full(len(types), np.nan)
            bars = ax.bar(positions, np.nan_to_num(heights), width, color=palette[variant].color)
            ax.bar_label(bars, ["n/a" if not np.isfinite(h) else f"{h:.0f}" for h in heights],
                         fontsize=7 if single else 6)
        ax.set_xticks(range(len(types)), types, fontsize=8.5 if single else 7, rotation=0 if single else 30)
        ax.set_ylabel("objects the census collection found", fontsize=8.5)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
        if facets.titles[n]:
            ax.set_title(facets.titles[n], fontsize=9)
        if rows.empty:
            _note(ax, "n/a (no census recorded)", "center")
    for ax in list(axes.flat)[len(facets):]:
        ax.remove()
    _legend(fig, [Line2D([], [], color=palette[v].color, linewidth=8, label=v) for v in variants],
            f"{experiment.name}: what one gc.collect() found, by type")
    return fig


# -- a run's figures --------------------------------------------------------

def provenance(meta: dict[str, Any]) -> str:
    """Where a run's figures came from, for a line under each of them."""
    numpy = (meta.get("versions") or {}).get("numpy")
    pythons = meta.get("trial_pythons") or [meta.get("python")]
    return (f"{meta.get('experiment')} run {meta.get('run_id')}: Python {', '.join(map(str, pythons))}, "
            f"numpy {numpy}, {meta.get('platform')}, {meta.get('cpu_count')} CPUs")


def figures(experiment: Experiment, tables: Mapping[str, pd.DataFrame], footer: str = "") -> dict[str, Figure]:
    return dict(_each_figure(experiment, tables, footer))


def _each_figure(experiment: Experiment, tables: Mapping[str, pd.DataFrame],
                 footer: str = "") -> Iterator[tuple[str, Figure]]:
    for name, fig in _figures(experiment, tables):
        if footer:
            # as the figure's x label, so the layout keeps room for it
            fig.supxlabel(footer, x=0.005, ha="left", fontsize=6.5, color="0.4")
        yield name, fig


def _table(tables: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    """A table if the run has it (a stored run reads it now; an older run may lack timeline.csv)."""
    try:
        table = tables[name]
    except Exception:  # KeyError, or a stored run's UsageError for a missing or cut-off file
        return None
    return table if isinstance(table, pd.DataFrame) else None


def _figures(experiment: Experiment, tables: Mapping[str, pd.DataFrame]) -> Iterator[tuple[str, Figure]]:
    """The run's figures, each built when asked for (write_plots renders one while it builds the next)."""
    samples = _table(tables, "samples")
    if samples is None or samples.empty:
        return
    summary = _table(tables, "summary")
    if summary is None:
        summary = pd.DataFrame()
    gc_events = _table(tables, "gc_events")
    records = _table(tables, "records")
    timeline = _table(tables, "timeline")
    palette = palette_of(summary, samples)
    yield "memory", memory_figure(experiment, samples, gc_events if gc_events is not None else pd.DataFrame(),
                                  summary, palette)
    if timeline is not None and len(timeline) and {"t_s", "rss_bytes", "trial", "variant"} <= set(timeline.columns):
        yield "timeline", timeline_figure(experiment, timeline, samples, gc_events, summary, palette)
    if not summary.empty:
        yield "summary", summary_figure(experiment, summary, palette)
        if _numeric_swept(experiment, summary):
            yield "sweep", sweep_figure(experiment, summary, palette)
    if records is not None and {"object_type", "count"} <= set(records.columns) and len(records):
        yield "census", census_figure(experiment, records, summary, palette)


def write_plots(run_dir: Path, experiment: Experiment, tables: Mapping[str, pd.DataFrame],
                footer: str = "") -> list[Path]:
    """Each figure as RUN/<name>.png. Rendering is most of a short run's time
    after its imports, so where the process may fork (no other thread: see
    `_may_fork`) each figure but the last is rendered by a child process of
    its own while this one builds the next; one a child did not write is
    rendered here."""
    fork = _may_fork()
    paths: dict[str, Path] = {}
    children: dict[str, tuple[int, Figure]] = {}
    last: tuple[str, Figure] | None = None
    for name, fig in _each_figure(experiment, tables, footer):
        paths[name] = run_dir / f"{name}.png"
        if last is not None:
            if fork:
                children[last[0]] = (_render_in_child(last[1], paths[last[0]]), last[1])
            else:
                _save(last[1], paths[last[0]])
        last = (name, fig)
    if last is not None:
        _save(last[1], paths[last[0]])
    for name, (pid, fig) in children.items():
        _, status = os.waitpid(pid, 0)
        if status != 0:  # its error is raised here, where it can be reported
            _save(fig, paths[name])
    return list(paths.values())


def _render_in_child(fig: Figure, path: Path) -> int:
    pid = os.fork()
    if pid == 0:  # the child: render one figure, write it, and go
        status = 1
        try:
            _save(fig, path)
            status = 0
        finally:
            os._exit(status)
    return pid


def _save(fig: Figure, path: Path) -> None:
    from harness.results import write_atomic

    png = io.BytesIO()
    fig.savefig(png, dpi=110, format="png")
    write_atomic(path, png.getvalue())  # no half-written PNG, and no temporary left on a full disk


def _may_fork() -> bool:
    """A fork copies only the calling thread: with another thread alive (a
    notebook kernel's, a Dask client's, a progress bar's monitor) a lock it
    held would stay held in the child, so figures are then rendered here."""
    return hasattr(os, "fork") and threading.active_count() == 1 and (os.cpu_count() or 1) > 1
