"""Run directories on disk: created once, written atomically, read back.

A run lives in `<out>/<experiment>/<run-id>/` with `samples.csv`,
`gc_events.csv`, `timeline.csv`, `summary.csv`, `meta.json`, the plots, and
`trials/` (each trial's raw event log). A run id is never reused: the
directory is created with `mkdir`, which fails if it exists, so two runs
started in the same second get different ids. Every file is written to a
temporary name in the same directory and renamed into place, so a reader
never sees half a file and a crash never replaces a whole one with a part.

Reading back checks what can be checked: a table that is empty, ends in
the middle of a line, or has fewer rows than `meta.json` recorded for it is
reported as truncated, naming the file.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from harness.errors import UsageError
from harness.tables import normalize_samples, normalize_summary

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()
TABLES = ("samples", "gc_events", "timeline", "records", "summary")


def new_run_dir(out: Path, experiment: str) -> Path:
    parent = Path(out) / experiment
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"output directory {out} is not a directory (a file is in the way)") from None
    except OSError as error:  # permissions, a read-only file system, /proc ...
        raise UsageError(f"output directory {out} cannot be created: {error.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UsageError(f"output directory {parent} is not writable")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        candidate = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise UsageError(f"output directory {parent} is not writable: {error.strerror}") from None
        (candidate / "trials").mkdir()
        return candidate
    raise UsageError(f"could not find a free run directory under {parent}")


def write_atomic(path: Path, data: str | bytes) -> None:
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files are as readable as its plots
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_table(path: Path, table: pd.DataFrame) -> None:
    write_atomic(path, table.to_csv(index=False))


class RunTables(Mapping):
    """A run's tables by name, each read from its directory when first asked
    for (and then kept): reading a run's summary never loads its samples,
    which a long run has millions of."""

    def __init__(self, path: Path, loaded: dict[str, pd.DataFrame] | None = None) -> None:
        self.path = Path(path)
        self._loaded = dict(loaded or {})

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._loaded:
            if name not in TABLES and name != "observer":
                raise KeyError(name)
            self._loaded[name] = read_table(self.path, name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(TABLES)

    def __len__(self) -> int:
        return len(TABLES)


class StoredRun:
    """A run read back from its directory: meta.json and the summary at once,
    the other tables when first used."""

    def __init__(self, path: Path, meta: dict[str, Any], tables: RunTables | None = None) -> None:
        self.path, self.meta = Path(path), meta
        self.tables = tables if tables is not None else RunTables(self.path)

    summary = property(lambda self: self.tables["summary"], doc="one row per trial")
    samples = property(lambda self: self.tables["samples"], doc="one row per sample point")
    gc_events = property(lambda self: self.tables["gc_events"], doc="one row per generation collected per interval")
    timeline = property(lambda self: self.tables["timeline"], doc="the sampled probe's RSS points")
    records = property(lambda self: self.tables["records"], doc="the workload's own rows")


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "meta.json"
    if not path.is_file():
        raise UsageError(f"{run_dir} is not a run directory (no meta.json)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is corrupt: {error}") from None
    except RecursionError:
        raise UsageError(f"{path} is corrupt: nested too deeply to be a run's metadata") from None
    if not isinstance(meta, dict) or "experiment" not in meta:
        raise UsageError(f"{path} is corrupt: not a run's metadata (no 'experiment')")
    for key, kind in META_TYPES.items():
        if key in meta and not isinstance(meta[key], kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise UsageError(f"{path} is corrupt: '{key}' is a {type(meta[key]).__name__}, not a {names}")
    return meta


# What readers of meta.json rely on: a value of another type is corruption.
META_TYPES: dict[str, type | tuple[type, ...]] = {
    "experiment": str, "run_id": str, "status": str, "python": str, "command": str, "params": dict,
    "variants": list, "probes": list, "versions": dict, "failed_trials": list, "trial_gc_thresholds": list,
    "gc_thresholds": list, "tables": dict, "trial_pythons": list,
}
# Summary columns readers compute with: each must hold numbers (or nothing).
NUMERIC_SUMMARY_COLUMNS = (
    "trial", "repeat", "iterations_completed", "numpy_bytes_final", "numpy_bytes_peak", "rss_peak_bytes",
    "gc_collections", "gc_collected_objects", "live_variables_final", "live_functions_final",
)


def read_table(run_dir: Path, name: str) -> pd.DataFrame:
    path = Path(run_dir) / f"{name}.csv"
    if not path.is_file():
        raise UsageError(f"{path} is missing{_still_running(run_dir)}")
    with path.open("rb") as stream:
        # Every table is written with a header line, and to_csv ends each line.
        stream.seek(0, os.SEEK_END)
        if stream.tell() == 0:
            raise UsageError(f"{path} is truncated: the file is empty (a table has at least its header)")
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) != b"\n":
            raise UsageError(f"{path} is truncated: its last line is incomplete")
    try:
        table = pd.read_csv(path, dtype=_text_columns(run_dir))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is corrupt: {str(error).splitlines()[0]}") from None
    if name == "summary":
        _check_summary_table(path, table)
        table = normalize_summary(table)
    elif name == "samples":
        table = normalize_samples(table)
    recorded = _recorded_rows(run_dir, name)
    if recorded is not None and recorded != len(table):
        raise UsageError(f"{path} is truncated or edited: {len(table)} rows, meta.json records {recorded}")
    return table


def _text_columns(run_dir: Path) -> dict[str, type]:
    """Columns read as text: the names, and the parameters whose values meta.json
    records as strings (so gc=on stays "on" and retain_grad=false stays "false",
    not a bool, exactly as the run built them)."""
    columns: dict[str, type] = {"experiment": str, "variant": str, "phase": str}
    try:
        params = json.loads((Path(run_dir) / "meta.json").read_text(encoding="utf-8")).get("params") or {}
    except (OSError, ValueError, AttributeError):
        return columns
    if isinstance(params, dict):
        for name, value in params.items():
            values = value if isinstance(value, list) else [value]
            if values and all(isinstance(v, str) for v in values):
                columns[name] = str
    return columns


def _check_summary_table(path: Path, table: pd.DataFrame) -> None:
    duplicated = [c for c in table.columns if "." in c and c.rsplit(".", 1)[0] in table.columns]
    if duplicated:
        raise UsageError(f"{path} is corrupt: column {duplicated[0].rsplit('.', 1)[0]!r} appears twice")
    for column in ("variant", "trial", "status"):
        if column not in table:
            raise UsageError(f"{path} is corrupt: no {column!r} column")
    for column in NUMERIC_SUMMARY_COLUMNS:
        if column in table and pd.to_numeric(table[column], errors="coerce").isna().sum() != table[column].isna().sum():
            raise UsageError(f"{path} is corrupt: column {column!r} holds something that is not a number")
    table["variant"] = table["variant"].astype(str)


def _recorded_rows(run_dir: Path, name: str) -> int | None:
    """The row count meta.json recorded for a table; None for runs that
    predate the record or whose meta.json cannot say (read_meta reports that)."""
    try:
        rows = json.loads((Path(run_dir) / "meta.json").read_text(encoding="utf-8"))["tables"][name]["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if isinstance(rows, int) else None


def _still_running(run_dir: Path) -> str:
    try:
        status = json.loads((Path(run_dir) / "meta.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return ""
    if status == "running":
        return " (meta.json says the run is still running: it is, or it was killed before writing its tables)"
    return ""


def stored_observer_results(run_dir: Path) -> list[Any]:
    """The observer check's findings, where the run made one (`--verify-observer`)."""
    from harness.observer import results_from_table

    if not (Path(run_dir) / "observer.csv").is_file():
        return []
    try:
        return results_from_table(read_table(run_dir, "observer"), str(Path(run_dir) / "observer.csv"))
    except (ValueError, TypeError) as error:  # a cell that is not a number where one must be
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"{Path(run_dir) / 'observer.csv'} is corrupt: {error}") from None


def load_run(run_dir: Path | str) -> StoredRun:
    """A run directory's meta.json and summary, checked; its other tables are
    read (and checked) when first used."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory")
    meta = read_meta(run_dir)
    if meta.get("status") == "running" and not (run_dir / "summary.csv").is_file():
        raise UsageError(f"{run_dir} has no results: meta.json says the run is still running "
                         "(it is, or it was killed before writing them)")
    run = StoredRun(run_dir, meta)
    run.summary  # noqa: B018 - read now, so a corrupt summary is reported before anything uses it
    return run
