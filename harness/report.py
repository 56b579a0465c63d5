"""report.html: a run on one page, to look at rather than read.

One self-contained file (the plots inlined as base64 PNGs, the style inline,
no script, nothing fetched from the network), so it can be mailed, attached
to a CI job or opened from a laptop's disk years later. It holds the claim,
the summary with each measured figure beside the model's expected one and
each trial's verdict, every check, the plots, the GC collections, the run's
meta data, and the error and traceback of every trial that failed.

`write_report(run_dir)` writes `RUN/report.html` (every run does at its end;
`harness report RUN` rebuilds it from what the run directory holds);
`write_comparison(a, b, out)` puts two runs side by side with `compare`'s
verdict on each metric (`harness report A B`).

Everything that comes from a run directory -- a variant's name, an error
message, a parameter value -- is escaped: a run directory is data.
"""
from __future__ import annotations

import base64
import html
import json
import platform
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.results import load_run, write_atomic
from harness.tables import GC_COLUMNS

REPORT_FILE = "report.html"
PLOTS = ("memory", "timeline", "summary", "sweep", "census")  # shown in this order, then any other PNG
GC_EVENT_ROWS = 200  # the rest is in gc_events.csv
FOLDED_CHECKS = 20  # more passed checks than this are folded away
MEASURED_BESIDE_EXPECTED = (
    ("numpy_bytes_final", "expected_numpy_bytes_final"),
    ("numpy_bytes_peak", "expected_numpy_bytes_peak"),
)
STATUS_COLOURS = {"ok": "#1a7f37", "checks_failed": "#b35900", "failed": "#c62828", "interrupted": "#6a1b9a"}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
.claim { font-style: italic; margin: 8px 0 12px; } .muted { color: #57606a; }
.status { color: #fff; padding: 2px 8px; border-radius: 10px; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; white-space: normal; min-width: 3.5em; vertical-align: bottom; }
.scroll { overflow-x: auto; max-width: 100%; } td.text, th.text { text-align: left; white-space: normal; }
tr.fail td { background: #ffebe9; } tr.pass td.verdict { color: #1a7f37; } tr.fail td.verdict { color: #c62828; }
td.expected { color: #57606a; } img { max-width: 100%; border: 1px solid #d0d7de; margin: 6px 0; }
figure { margin: 12px 0; } figcaption { color: #57606a; font-size: 12px; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; } .side > div { min-width: 0; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None or (not isinstance(value, (list, dict)) and pd.isna(value))
                       else str(value))


def _number(value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        return _e(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{float(value):.3g}"


def _status(status: Any) -> str:
    colour = STATUS_COLOURS.get(str(status), "#57606a")
    return f'<span class="status" style="background:{colour}">{_e(status)}</span>'


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], row_classes: Iterable[str] = ()) -> str:
    """Cells are HTML already (escaped by the caller)."""
    classes = list(row_classes)
    out = ['<div class="scroll"><table><thead><tr>' + "".join(f"<th>{_e(h.replace('_', ' '))}</th>" for h in head) + "</tr></thead><tbody>"]
    for n, row in enumerate(rows):
        cls = f' class="{classes[n]}"' if n < len(classes) and classes[n] else ""
        out.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return "".join(out) + "</tbody></table></div>"


def _td(value: Any, kind: str = "") -> str:
    text = _number(value) if kind != "text" else _e(value)
    return f'<td class="{kind}">{text}</td>' if kind else f"<td>{text}</td>"


def _swept(meta: dict[str, Any], summary: pd.DataFrame) -> list[str]:
    return [p for p in meta.get("params", {}) if p in summary and summary[p].nunique(dropna=False) > 1]


def _verdicts(checks: list[Any]) -> dict[int, str]:
    """Per trial: "pass", "FAIL (n)" or absent when no check judged it."""
    by_trial: dict[int, list[bool]] = {}
    for check in checks:
        for trial in {check.trial, getattr(check, "other_trial", check.trial)}:
            by_trial.setdefault(int(trial), []).append(bool(check.passed))
    return {t: "pass" if all(v) else f"FAIL ({v.count(False)})" for t, v in by_trial.items()}


def summary_html(meta: dict[str, Any], summary: pd.DataFrame, checks: list[Any]) -> str:
    """Each trial: measured beside expected (or the bound), the other figures, its verdict."""
    swept = _swept(meta, summary)
    pairs = [(m, e) for m, e in MEASURED_BESIDE_EXPECTED if m in summary]
    bound = "bound_numpy_bytes_final" in summary and summary["bound_numpy_bytes_final"].notna().any()
    others = [c for c in ("rss_peak_bytes", "gc_collections", "gc_collected_objects", "live_functions_final",
                          "cycle_debt_peak_bytes") if c in summary and summary[c].notna().any()]
    others += [c for c in meta.get("recorded_figures", []) if c in summary]  # the workload's own (losses)
    head = ["trial", "variant", *swept, "status"]
    for measured, expected in pairs:
        head += [measured, "expected"]
        if measured == "numpy_bytes_final" and bound:
            head.append("bound")
    head += [*others, "model", "verdict"]
    verdicts = _verdicts(checks)
    rows, classes = [], []
    for n, row in summary.reset_index(drop=True).iterrows():
        trial = int(row["trial"]) if "trial" in row and pd.notna(row["trial"]) else n
        cells = [_td(trial), _td(row.get("variant"), "text"), *(_td(row.get(p), "text") for p in swept),
                 _td(row.get("status"), "text")]
        for measured, expected in pairs:
            cells += [_td(row.get(measured)), _td(row.get(expected), "expected")]
            if measured == "numpy_bytes_final" and bound:
                cells.append(_td(row.get("bound_numpy_bytes_final"), "expected"))
        cells += [_td(row.get(c)) for c in others]
        model = row.get("model_variant")
        cells.append(_td(model if isinstance(model, str) and model else "no model", "text"))
        verdict = verdicts.get(trial, "not judged")
        cells.append(f'<td class="verdict text">{_e(verdict)}</td>')
        rows.append(cells)
        classes.append("fail" if verdict.startswith("FAIL") or row.get("status") not in ("ok", None) else
                       "pass" if verdict == "pass" else "")
    note = ('<p class="muted">bytes; "expected" is the analytic model\'s figure (exact with the GC off, '
            'a bound where the GC decides), "-" where a figure was not measured or the model makes no claim.</p>')
    return _table(head, rows, classes) + note


def checks_html(checks: list[Any]) -> str:
    """Failed checks in full; passed ones too when few, else folded (a 36-trial sweep has a hundred)."""
    if not checks:
        return '<p class="muted">No expectation applies to this run\'s trials: measured, not checked.</p>'
    failed = [c for c in checks if not c.passed]
    passed = [c for c in checks if c.passed]

    def table(group: list[Any]) -> str:
        rows = [[f'<td class="verdict text">{"PASS" if c.passed else "FAIL"}</td>', _td(c.line()[5:], "text")]
                for c in group]
        return _table(["verdict", "check"], rows, ["pass" if c.passed else "fail" for c in group])

    parts = [f"<p>{len(passed)} passed, {len(failed)} failed</p>"]
    if failed:
        parts.append(table(failed))
    if passed and (len(checks) <= FOLDED_CHECKS and not failed):
        parts.append(table(passed))
    elif passed:
        parts.append(f"<details><summary>the {len(passed)} that passed</summary>{table(passed)}</details>")
    return "".join(parts)


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def plots_html(run_dir: Path) -> str:
    pngs = sorted(run_dir.glob("*.png"), key=lambda p: (PLOTS.index(p.stem) if p.stem in PLOTS else len(PLOTS),
                                                        p.name))
    if not pngs:
        return '<p class="muted">No plots (run with --no-plots, or interrupted before they were drawn).</p>'
    return "".join(f'<figure><img src="{_png(p)}" alt="{_e(p.name)}"><figcaption>{_e(p.name)}</figcaption></figure>'
                   for p in pngs)


def gc_events_html(run_dir: Path, tables: Any) -> str:
    try:
        events = tables["gc_events"]
    except (KeyError, FileNotFoundError):
        return '<p class="muted">No GC events recorded (the gc probe was off).</p>'
    if not len(events):
        return '<p class="muted">No collection ran during any trial\'s workload.</p>'
    columns = [c for c in ("trial", "variant", *GC_COLUMNS) if c in events]
    shown = events.head(GC_EVENT_ROWS)
    counts = events.groupby(["trial", "variant"] if "trial" in events else ["variant"]).size()
    lines = ", ".join(f"trial {' '.join(map(str, k)) if isinstance(k, tuple) else k}: {n}" for k, n in counts.items())
    more = (f'<p class="muted">the first {GC_EVENT_ROWS} of {len(events):,} collections; all are in '
            f"gc_events.csv</p>" if len(events) > GC_EVENT_ROWS else "")
    rows = [[_td(r[c], "text" if c == "variant" else "") for c in columns] for _, r in shown.iterrows()]
    return (f"<p>collections per trial: {_e(lines)}</p>"
            f"<details><summary>every collection</summary>{_table(columns, rows)}{more}</details>")


def _trial_error(run_dir: Path, trial: int) -> tuple[str, str]:
    """The error and traceback a failed trial's process recorded in its events file."""
    error, trace = "", ""
    for path in sorted((run_dir / "trials").glob(f"{trial:04d}-*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut short when the process died
            if isinstance(event, dict) and event.get("event") == "error":
                error, trace = str(event.get("error", "")), str(event.get("traceback", ""))
    return error, trace


def failures_html(run_dir: Path, meta: dict[str, Any]) -> str:
    failed = meta.get("failed_trials") or []
    if not failed:
        return ""
    parts = []
    for failure in failed:
        error, trace = _trial_error(run_dir, int(failure["trial"]))
        parts.append(f"<h3>trial {_e(failure['trial'])} {_e(failure['variant'])}: {_e(failure['status'])}</h3>"
                     f"<p>{_e(failure.get('error') or error)}</p>"
                     + (f"<pre>{_e(trace)}</pre>" if trace else
                        '<p class="muted">no traceback: the process recorded none (killed, timed out or '
                        "refused)</p>"))
    return "<h2>Failed trials</h2>" + "".join(parts)


def meta_html(meta: dict[str, Any]) -> str:
    rows = [[_td(key, "text"), f'<td class="text"><code>{_e(json.dumps(value, default=str) if isinstance(value, (dict, list)) else value)}</code></td>']
            for key, value in meta.items()]
    return f"<details><summary>{len(meta)} entries</summary>{_table(['key', 'value'], rows)}</details>"


def _header(meta: dict[str, Any], run_dir: Path) -> str:
    definition = meta.get("experiment_definition") or {}
    checks = (f"checks {meta.get('checks_passed', 0)} passed, {meta.get('checks_failed', 0)} failed"
              if "checks_passed" in meta else "")
    return (f"<h1>{_e(meta.get('experiment'))}: {_e(definition.get('title', ''))}</h1>"
            f"<p>{_status(meta.get('status'))} run {_e(meta.get('run_id'))} &middot; {_e(checks)} &middot; "
            f"seed step {_e(definition.get('seed_step'))}</p>"
            f'<p class="claim">{_e(definition.get("claim", ""))}</p>'
            f'<p class="muted"><code>{_e(meta.get("command"))}</code><br>{_e(run_dir)}<br>'
            f"Python {_e(meta.get('python'))} on {_e(meta.get('platform'))}, {_e(meta.get('cpu_count'))} CPUs; "
            f"started {_e(meta.get('started'))}, finished {_e(meta.get('finished'))}</p>")


def _run_sections(run: Any, meta: dict[str, Any], checks: list[Any] | None = None) -> tuple[str, str, str]:
    """(header, body, plots) of one run (a `StoredRun`), for one page or a column of two;
    `checks`: as the run just judged them, else judged as `harness check` would."""
    from harness.experiment_record import checks_of_run

    if checks is None:
        checks = checks_of_run(run.path, meta, run.summary)
    body = ("<h2>Summary</h2>" + summary_html(meta, run.summary, checks)
            + "<h2>Checks</h2>" + checks_html(checks)
            + failures_html(run.path, meta)
            + "<h2>GC collections</h2>" + gc_events_html(run.path, run.tables))
    return _header(meta, run.path), body, plots_html(run.path)


def _page(title: str, body: str) -> str:
    made = f"report made with Python {platform.python_version()} on {platform.node() or 'this machine'}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f'<body>{body}<p class="muted">{_e(made)}</p></body></html>\n')


def render_report(run_dir: Path, meta: dict[str, Any] | None = None, checks: list[Any] | None = None) -> str:
    """The page of one run (`meta`, `checks`: the run's own, when it is writing its results)."""
    run = load_run(run_dir)
    meta = meta or run.meta
    header, body, plots = _run_sections(run, meta, checks)
    return _page(f"{meta.get('experiment')} {meta.get('run_id')}",
                 header + body + "<h2>Plots</h2>" + plots + "<h2>Meta data</h2>" + meta_html(meta))


def write_report(run_dir: Path | str, meta: dict[str, Any] | None = None, out: Path | None = None,
                 checks: list[Any] | None = None) -> Path:
    """RUN/report.html (or `out`), written whole or not at all."""
    run_dir = Path(run_dir)
    path = out or run_dir / REPORT_FILE
    write_atomic(path, render_report(run_dir, meta, checks))
    return path


def comparison_html(a: Path, b: Path) -> str:
    from harness.compare import NotComparable, compare, verdict_line

    try:
        comparison = compare(a, b)
    except NotComparable as reason:
        return f'<p class="muted">Not compared metric by metric: {_e(reason)}</p>'
    rows = [[_td(r.trial, "text"), _td(r.metric, "text"), _td(r.kind, "text"), _td(r.baseline), _td(r.current),
             _td(r.ratio), f'<td class="verdict text">{_e(r.verdict)}</td>', _td(r.note, "text")]
            for r in comparison.rows]
    table = _table(["trial", "metric", "kind", "A", "B", "B/A", "verdict", "note"], rows,
                   ["fail" if r.failed else "pass" if r.judged else "" for r in comparison.rows])
    warnings = "".join(f"<p>warning: {_e(w)}</p>" for w in comparison.warnings)
    return f"<p><b>{_e(verdict_line(comparison))}</b></p>{warnings}{table}"


def render_comparison(a: Path, b: Path) -> str:
    run_a, run_b = load_run(a), load_run(b)
    left, right = _run_sections(run_a, run_a.meta), _run_sections(run_b, run_b.meta)
    columns = "".join(f'<div class="side">{"".join(f"<div>{part}</div>" for part in pair)}</div>'
                      for pair in zip(left, right))
    title = f"{run_a.meta.get('experiment')} {run_a.meta.get('run_id')} vs {run_b.meta.get('experiment')} " \
            f"{run_b.meta.get('run_id')}"
    return _page(title, f"<h1>A: {_e(run_a.path)}<br>B: {_e(run_b.path)}</h1>"
                        "<h2>Compared (A as the baseline)</h2>" + comparison_html(run_a.path, run_b.path)
                 + columns)


def write_comparison(a: Path | str, b: Path | str, out: Path | str) -> Path:
    out = Path(out)
    write_atomic(out, render_comparison(Path(a), Path(b)))
    return out
