"""The run's tables, written as its trials finish: a long run stays small.

Each finished trial's sample rows are read from its sample file CHUNK_ROWS
at a time; each chunk is appended to `samples.csv` (and to
`samples.parquet`, a columnar copy, when pyarrow is installed), its GC
events to `gc_events.csv`, and folded into the trial's running summary
figures (`harness.tables.SampleStats`); the sampled probe's timeline goes to
`timeline.csv` batch by batch. So the run's own process holds one chunk, the
summary rows, the workload's own records and, for the plots, at most about
PLOT_ROWS rows per trial -- however many iterations the trials ran.

For the plots a trial with more rows than that is drawn from an envelope:
in each of PLOT_ROWS / 2 runs of consecutive sample points, the lowest and
the highest reading (numpy bytes, or RSS where numpy's are not seen), so a
peak or a drop is never averaged away. The figure says so.

Tables are appended to `<table>.partial` and renamed into place when the
run ends, so a reader never sees half a table under a table's name. When a write fails (a full
disk), the writer keeps gathering the summary, so what was measured can
still be printed; the temporary files are removed.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.experiment import Experiment
from harness.probes import sample_columns_for
from harness.tables import (
    GC_COLUMNS,
    IDENTITY,
    INTEGER_SAMPLE_COLUMNS,
    SAMPLE_COLUMNS,
    TIMELINE_COLUMNS,
    SampleStats,
    TrialOutcome,
    _identity,
    normalize_samples,
    summarize,
    summary_frame,
)

CHUNK_ROWS = 16_384
PLOT_ROWS = 4_000
PLOT_TIMELINE_POINTS = 2_000  # a trial's timeline points drawn: past twice this, an envelope


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # as readable as the plots (os.open applies the umask too: no harm)


def _partial(path: Path) -> tuple[int, Path]:
    """`<table>.partial` beside the table: where its rows go until the run ends.
    A run killed outright (SIGKILL) leaves it, named for what it is: the rows
    of the trials that finished before the kill."""
    partial = path.with_name(path.name + ".partial")
    return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE), partial


class TableFile:
    """One CSV table with a fixed header, appended chunk by chunk to
    `<name>.partial` and renamed to its name when the run ends."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns, self.rows = path, columns, 0
        fd, self._tmp = _partial(path)
        self._stream = os.fdopen(fd, "w", encoding="utf-8", newline="")
        pd.DataFrame(columns=columns).to_csv(self._stream, index=False)

    def append(self, frame: pd.DataFrame) -> None:
        if len(frame):
            frame.reindex(columns=self.columns).to_csv(self._stream, header=False, index=False)
            self.rows += len(frame)

    def commit(self) -> None:
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class ParquetFile:
    """The samples again as Parquet, one row group per chunk (pyarrow's
    ParquetWriter streams them: a reader can load a few columns of a long run)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        import pyarrow.parquet  # noqa: F401 - fails here, not half-way, when it cannot load

        self.path, self.columns = path, columns
        fd, self._tmp = _partial(path)
        os.close(fd)
        self._writer: Any = None
        self._schema: Any = None

    def append(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(frame):
            return
        frame = frame.reindex(columns=self.columns)
        if self._writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            # A column empty in the first chunk has no type yet: its own (counts and
            # bytes are integers), else floats, which any later number fits.
            self._schema = pa.schema([
                pa.field(f.name, pa.int64() if f.name in INTEGER_SAMPLE_COLUMNS else pa.float64())
                if pa.types.is_null(f.type) else f for f in table.schema]).remove_metadata()
            self._writer = pq.ParquetWriter(self._tmp, self._schema)
        self._writer.write_table(pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False))

    def commit(self) -> None:
        if self._writer is None:
            self.discard()  # no sample rows at all: no columnar copy
            return
        self._writer.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


def parquet_available() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def thin_timeline(rows: pd.DataFrame) -> pd.DataFrame:
    """A trial's timeline, in time order, in at most 2 * PLOT_TIMELINE_POINTS rows:
    of each run of four points the lowest and the highest, halving until it
    fits, so every peak survives (a long trial is polled every 5 ms)."""
    while len(rows) > 2 * PLOT_TIMELINE_POINTS:
        values = pd.to_numeric(rows["rss_bytes"], errors="coerce").to_numpy(dtype=float)
        frame = pd.DataFrame({"g": np.arange(len(rows)) // 4, "v": np.nan_to_num(values, nan=-np.inf)})
        keep = np.unique(np.concatenate([frame.groupby("g")["v"].idxmin().to_numpy(),
                                         frame.groupby("g")["v"].idxmax().to_numpy()]))
        rows = rows.iloc[keep]
    return rows


class RunTableWriter:
    """Writes a run's trials into its tables one trial at a time; see the module docstring."""

    def __init__(self, run_dir: Path, experiment: Experiment, probes: list[str],
                 chunk_rows: int | None = None, parquet: bool | None = None,
                 models: dict[str, Any] | None = None) -> None:
        self.run_dir, self.experiment = Path(run_dir), experiment
        self.models = dict(models or {})  # variant -> harness.inference.ModelChoice
        self.chunk_rows = chunk_rows or CHUNK_ROWS
        self.summary_rows: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.plot_samples: list[pd.DataFrame] = []
        self.plot_events: list[dict[str, Any]] = []
        self.plot_timeline: list[pd.DataFrame] = []  # each trial's, thinned as it streams (thin_timeline)
        self.decimated: dict[int, tuple[int, int]] = {}  # trial -> (rows, rows drawn)
        self.error: OSError | None = None  # the first write that failed; writing stops there
        ident = list(IDENTITY) + [p.name for p in experiment.params]
        measured = [c for c in sample_columns_for(probes)[:-1] if not c.startswith("gc_total_")]
        sample_columns = ident + list(SAMPLE_COLUMNS) + [c for c in measured if c not in SAMPLE_COLUMNS]
        self.sample_columns = sample_columns
        self._files: dict[str, Any] = {}
        tables = {"samples": sample_columns, "gc_events": ident + list(GC_COLUMNS),
                  "timeline": ident + list(TIMELINE_COLUMNS)}
        try:  # one by one, so a failure (a full disk) still discards those already made
            for name, columns in tables.items():
                self._files[name] = TableFile(self.run_dir / f"{name}.csv", columns)
            if parquet_available() if parquet is None else parquet:
                self._files["samples.parquet"] = ParquetFile(self.run_dir / "samples.parquet", sample_columns)
        except OSError as error:
            self._failed(error)

    def add(self, outcome: TrialOutcome) -> dict[str, Any]:
        """Write one trial's rows; return (and keep) its summary row."""
        identity = _identity(self.experiment, outcome)
        stats = SampleStats()
        rows = _rows_in(outcome)
        envelope = Envelope(max(1, -(-rows // (PLOT_ROWS // 2))))  # sample points per envelope run
        drawn: list[pd.DataFrame] = []
        events_drawn: list[dict[str, Any]] = []
        first = 0
        for chunk in outcome.sample_chunks(self.chunk_rows):
            events = stats.add(chunk)
            shown = chunk[[c for c in chunk.columns if not c.startswith("gc_total_")]]
            shown.insert(0, "sample", np.arange(first, first + len(shown)))
            table = shown.assign(**identity).reindex(columns=self.sample_columns)
            self._write("samples", table)
            self._write("samples.parquet", table)
            self._write("gc_events", pd.DataFrame([{**identity, **e} for e in events]))
            drawn.append(envelope.add(table))
            # The GC markers go on drawn rows only (pruned each chunk, so they stay few).
            on = envelope.points()
            events_drawn = [e for e in [*events_drawn, *events] if (e["iteration"], e["phase"]) in on]
            first += len(shown)
        drawn.append(envelope.finish())
        drawn = [d for d in drawn if len(d)]
        if drawn:
            self.plot_samples.append(pd.concat(drawn, ignore_index=True))
            if envelope.bucket > 1:
                self.decimated[outcome.trial] = (first, len(self.plot_samples[-1]))
        on = envelope.points()
        self.plot_events += [{**identity, **e} for e in events_drawn if (e["iteration"], e["phase"]) in on]
        after = stats.finish(outcome.result.get("gc_at_end") if "gc" in outcome.probes else None)
        self._write("gc_events", pd.DataFrame([{**identity, **e} for e in after]))
        self.plot_events += [{**identity, **e} for e in after]
        drawn_timeline = None
        for points in outcome.timeline_chunks():
            stats.add_timeline(points)
            timeline = pd.DataFrame([{**identity, **p} for p in points])
            self._write("timeline", timeline)
            drawn_timeline = thin_timeline(timeline if drawn_timeline is None
                                           else pd.concat([drawn_timeline, timeline], ignore_index=True))
        if drawn_timeline is not None and len(drawn_timeline):
            self.plot_timeline.append(drawn_timeline)
        self.records += [{**identity, **record} for record in outcome.records]
        row = {**identity, **summarize(self.experiment, outcome, stats, self.models.get(outcome.variant))}
        self.summary_rows.append(row)
        return row

    def _write(self, name: str, frame: pd.DataFrame) -> None:
        if self.error is not None or name not in self._files or frame.empty:
            return
        try:
            self._files[name].append(normalize_samples(frame) if name.startswith("samples") else frame)
        except OSError as error:
            self._failed(error)

    def _failed(self, error: OSError) -> None:
        if self.error is None:
            self.error = error
        for file in self._files.values():
            file.discard()

    def summary(self) -> pd.DataFrame:
        return summary_frame(self.experiment, self.summary_rows)

    def tables_for_plots(self) -> dict[str, pd.DataFrame]:
        """What the plots draw: every trial's rows or its envelope, the GC events on them, its timeline."""
        samples = pd.concat(self.plot_samples, ignore_index=True) if self.plot_samples else pd.DataFrame()
        samples.attrs["decimated"] = dict(self.decimated)
        ident = list(IDENTITY) + [p.name for p in self.experiment.params]
        timeline = (pd.concat(self.plot_timeline, ignore_index=True) if self.plot_timeline
                    else pd.DataFrame(columns=[*ident, *TIMELINE_COLUMNS]))
        return {"samples": samples, "gc_events": pd.DataFrame(self.plot_events, columns=[*ident, *GC_COLUMNS]),
                "records": pd.DataFrame(self.records), "summary": self.summary(), "timeline": timeline}

    def commit(self) -> dict[str, int]:
        """Rename the streamed tables into place; their row counts, for meta.json.
        Raises the first write's OSError if one failed (nothing is renamed then)."""
        if self.error is not None:
            raise self.error
        try:
            for file in self._files.values():
                file.commit()
        except OSError as error:
            self._failed(error)
            raise
        return {name: file.rows for name, file in self._files.items() if isinstance(file, TableFile)}

    def discard(self) -> None:
        for file in self._files.values():
            file.discard()


def _rows_in(outcome: TrialOutcome) -> int:
    """The trial's sample rows (from the file's size: an upper bound, enough to size the envelope)."""
    if outcome.sample_rows is not None:
        return len(outcome.sample_rows)
    if outcome.samples_path is None or not os.path.exists(outcome.samples_path):
        return 0
    return os.path.getsize(outcome.samples_path) // (8 * (len(outcome.sample_columns) + 1))


class Envelope:
    """Per run of `bucket` consecutive sample points, the rows with the lowest
    and the highest reading. The last run of a chunk may go on in the next, so
    its two candidates wait (`pending`) and compete with the next chunk's rows."""

    def __init__(self, bucket: int) -> None:
        self.bucket = bucket
        self.pending: pd.DataFrame | None = None
        self._drawn: set[tuple[int, str]] = set()

    def add(self, table: pd.DataFrame) -> pd.DataFrame:
        """The drawn rows of the runs this chunk completes."""
        if self.bucket == 1:
            self._drawn.update(zip(table["iteration"], table["phase"]))
            return table
        if self.pending is not None:
            table = pd.concat([self.pending, table], ignore_index=True)
        else:
            table = table.reset_index(drop=True)
        runs = table["sample"].to_numpy() // self.bucket
        grouped = _reading(table).groupby(runs)
        kept = table.loc[np.union1d(grouped.idxmin().to_numpy(), grouped.idxmax().to_numpy())]
        last = kept["sample"].to_numpy() // self.bucket == runs[-1]
        self.pending, done = kept[last], kept[~last]
        self._drawn.update(zip(done["iteration"], done["phase"]))
        return done

    def finish(self) -> pd.DataFrame:
        pending, self.pending = self.pending, None
        if pending is None:
            return pd.DataFrame()
        self._drawn.update(zip(pending["iteration"], pending["phase"]))
        return pending

    def points(self) -> set[tuple[int, str]]:
        """The (iteration, phase) of every row drawn so far or still a candidate."""
        if self.pending is None:
            return self._drawn
        return self._drawn | set(zip(self.pending["iteration"], self.pending["phase"]))


def _reading(table: pd.DataFrame) -> pd.Series:
    """What the envelope follows: numpy bytes, else RSS, else nothing (the first row of each run)."""
    for column in ("numpy_bytes", "rss_bytes"):
        value = pd.to_numeric(table[column], errors="coerce").astype("float64")
        if value.notna().any():
            return value.fillna(value.mean())
    return pd.Series(np.zeros(len(table)), index=table.index)
