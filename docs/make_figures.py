"""Regenerate every figure in docs/ from real runs: `python docs/make_figures.py`.

Each figure is the named plot of one run, made by the command listed here
(through the Python API, into a scratch directory), copied to
docs/figures/, with a line under it saying which run, Python, numpy and
machine it came from. docs/figures/SOURCES.md records the same for each
figure, with the command and the run's summary, so the numbers the docs quote
can be checked against the run that drew the picture.

    python docs/make_figures.py                 # all of them
    python docs/make_figures.py exp17_memory_300 exp16_memory   # some

The five-engine figure needs the optional engines (`pip install -e ".[compare]"`).
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

import harness  # noqa: E402

FIGURES = DOCS / "figures"
SUMMARY_COLUMNS = ["variant", "numpy_bytes_final", "numpy_bytes_peak", "gc_collections", "rss_peak_bytes"]


@dataclass(frozen=True)
class Figure:
    name: str  # docs/figures/<name>.png
    plot: str  # the run's plot to copy: memory, summary, sweep, census
    experiment: str
    command: str  # the same run on the command line
    kwargs: dict[str, Any] = field(default_factory=dict)


FIGURES_LIST = (
    Figure("exp17_memory_300", "memory", "exp17", "python -m harness run exp17 --param iterations=300",
           {"params": {"iterations": 300}}),
    Figure("exp17_five_engines", "memory", "exp17",
           "python -m harness run exp17 --variant strongref --variant weakref --variant dezero_official "
           "--variant torch --variant file:examples/step17_notebook.py --env MALLOC_MMAP_THRESHOLD_=65536",
           {"variants": ["strongref", "weakref", "dezero_official", "torch",
                         f"file:{DOCS.parent / 'examples' / 'step17_notebook.py'}"],
            "trial_env": {"MALLOC_MMAP_THRESHOLD_": "65536"}}),
    Figure("exp16_memory", "memory", "exp16", "python -m harness run exp16"),
    Figure("exp16_census", "census", "exp16", "python -m harness run exp16"),
    Figure("exp18_retain_grad_memory", "memory", "exp18_retain_grad",
           "python -m harness run exp18_retain_grad --param retain_grad=false,true",
           {"params": {"retain_grad": ["false", "true"]}}),
    Figure("exp18_retain_grad_summary", "summary", "exp18_retain_grad",
           "python -m harness run exp18_retain_grad --param retain_grad=false,true",
           {"params": {"retain_grad": ["false", "true"]}}),
    Figure("exp18_no_grad_memory", "memory", "exp18_no_grad", "python -m harness run exp18_no_grad"),
    Figure("exp17_sweep", "sweep", "exp17_sweep",
           "python -m harness run exp17_sweep --param size=1e2,1e3,1e4,1e5 --param depth=1,3,9 --jobs 2",
           {"params": {"size": [100, 1_000, 10_000, 100_000], "depth": [1, 3, 9]}, "jobs": 2}),
    Figure("exp17_pythons", "memory", "exp17",
           "python -m harness run exp17 --python 3.11 --python 3.12 --python 3.13 --param iterations=300",
           {"pythons": ["3.11", "3.12", "3.13"], "params": {"iterations": 300}}),
    Figure("exp_mlp_memory", "memory", "exp_mlp", "python -m harness run exp_mlp"),
    Figure("exp_mlp_sweep", "summary", "exp_mlp",
           "python -m harness run exp_mlp --param batch=30,100,300 --param hidden=10,100,1000",
           {"params": {"batch": [30, 100, 300], "hidden": [10, 100, 1000]}}),
    Figure("exp_mlp_sweep_memory", "memory", "exp_mlp",
           "python -m harness run exp_mlp --param batch=30,100,300 --param hidden=10,100,1000",
           {"params": {"batch": [30, 100, 300], "hidden": [10, 100, 1000]}}),
)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.platform()}, {cpu}"


def make(figures: list[Figure]) -> list[str]:
    """Run each distinct command once; copy its plots; return SOURCES.md sections."""
    sections, runs = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for figure in figures:
            key = figure.command
            if key not in runs:
                print(f"running: {figure.command}", flush=True)
                runs[key] = harness.run(figure.experiment, out=scratch, progress=False, **figure.kwargs)
            run = runs[key]
            source = run.path / f"{figure.plot}.png"
            shutil.copyfile(source, FIGURES / f"{figure.name}.png")
            shown = [c for c in SUMMARY_COLUMNS + [p for p in run.meta["params"] if p in run.summary]
                     if c in run.summary]
            table = run.summary[list(dict.fromkeys(shown))].to_string(index=False)
            sections.append(
                f"## {figure.name}.png\n\n"
                f"- command: `{figure.command}`\n"
                f"- run: {run.meta['run_id']}, status {run.meta['status']}, "
                f"Python {', '.join(run.meta.get('trial_pythons') or [run.meta['python']])}, "
                f"numpy {run.meta['versions'].get('numpy')}\n"
                f"- machine: {_machine()}, {run.meta['cpu_count']} CPUs\n\n"
                f"```\n{table}\n```\n"
            )
            print(f"wrote docs/figures/{figure.name}.png", flush=True)
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to make (default: all)")
    args = parser.parse_args(argv)
    known = {f.name: f for f in FIGURES_LIST}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from: {', '.join(known)}")
    chosen = [known[n] for n in args.names] if args.names else list(FIGURES_LIST)
    sections = make(chosen)
    sources = FIGURES / "SOURCES.md"
    kept = _kept_sections(sources, {f.name for f in chosen})
    sources.write_text("# Where each figure in docs/ comes from\n\n"
                       "Written by `python docs/make_figures.py`; do not edit by hand.\n\n"
                       + "\n".join(sorted(kept + sections)), encoding="utf-8")
    return 0


def _kept_sections(sources: Path, remade: set[str]) -> list[str]:
    """The sections of figures not remade this time."""
    if not sources.exists():
        return []
    text = sources.read_text(encoding="utf-8")
    parts = ["## " + part for part in text.split("\n## ")[1:]]
    return [p.rstrip("\n") + "\n" for p in parts if p.split(".png", 1)[0][3:] not in remade]


if __name__ == "__main__":
    sys.exit(main())
