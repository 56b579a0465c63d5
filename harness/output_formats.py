"""Machine-readable output for `list`, `show`, `check` and `compare`
(`--format json` or `--format csv`), beside the text a person reads.

JSON carries the whole document (a run's metadata with its summary, the
checks with the verdict); CSV carries its one table, so it can be piped to
another tool. Missing values are `null` in JSON and empty in CSV, never "-"
or NaN.
"""
from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("text", "json", "csv")


def native(value: Any) -> Any:
    """A value JSON can hold: numpy and pandas scalars as Python ones, NaN and <NA> as None."""
    pandas = sys.modules.get("pandas")  # a value can be pandas' NA only once pandas is imported
    if value is None or (pandas is not None and (value is pandas.NA or value is pandas.NaT)):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [native(v) for v in value]
    return value


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): native(v) for k, v in row.items()} for row in table.astype(object).to_dict("records")]


def emit(fmt: str, document: Mapping[str, Any], rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> None:
    """Print `document` as JSON, or `rows` as CSV."""
    if fmt == "json":
        json.dump(native(document), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        import pandas as pd

        table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        table.to_csv(sys.stdout, index=False)
