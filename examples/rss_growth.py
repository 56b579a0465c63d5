"""RSS growth per trial of a finished run, beside the exact numpy-domain bytes.

    python examples/rss_growth.py results/exp17/<run-id>

Engines start from different resident sizes (importing torch maps ~190 MB of
libraries), so absolute RSS says little across engines; what each trial's RSS
grew by since its start sample does. "after iteration 1" leaves out one-time
costs of the first iteration (torch sets up its autograd engine then).
Prints a Markdown table; "n/a" where a probe cannot see the engine.
"""
from __future__ import annotations

import sys

import pandas as pd

from harness.api import load


def rss_growth(run_dir: str) -> pd.DataFrame:
    run = load(run_dir)
    summary = run.summary.set_index("trial")
    rows = []
    for trial, samples in run.samples.groupby("trial", sort=True):
        rss = samples["rss_bytes"].to_numpy()
        row = summary.loc[trial]
        rows.append({
            "variant": row["variant"],
            "numpy_bytes_final": row["numpy_bytes_final"],
            "numpy_bytes_peak": row["numpy_bytes_peak"],
            "rss_at_start_MB": round(rss[0] / 1e6, 1),
            "rss_growth_final_kB": round((rss[-1] - rss[0]) / 1e3),
            "rss_growth_max_kB": round((rss.max() - rss[0]) / 1e3),
            "rss_growth_after_iteration_1_kB": round((rss[-1] - rss[1]) / 1e3) if len(rss) > 1 else None,
            "live_variables_final": row.get("live_variables_final"),
        })
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if value is None or pd.isna(value):
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/rss_growth.py RUN_DIR")
    print(markdown(rss_growth(sys.argv[1])))
