"""`harness explain VARIANT`: what an engine does to memory, and why.

The engine is examined in a fresh process (`harness.graph_anatomy`), so a
plugin's import-time code and whatever its graphs do stay there. Here the
findings become plain words, a table, the picture of one graph
(`harness.graph_picture`) and, with `--json`, a document for machines.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError

OWNERSHIP = {
    "refcount": "freed by reference counting when the last user reference drops",
    "cycles": "held by reference cycles until the cyclic GC runs",
    "none": "no graph recorded",
    "leaked": "not freed even by a full collection (something global holds it)",
    "unknown": "not known (the engine's outputs take no weak reference)",
}


def examine(variant: str, timeout_s: float = 300) -> dict[str, Any]:
    """The anatomy of `variant`'s graphs, found in a fresh process."""
    from engine.adapters.plugin import is_plugin
    from engine.variants import UnknownVariantError, check_plugin, get_variant

    try:
        if is_plugin(variant):
            check_plugin(variant)
        else:
            known = get_variant(variant)
            if not known.available():
                raise UsageError(f"variant {variant!r} needs an optional extra: {known.install_hint}")
    except UnknownVariantError as error:
        raise UsageError(str(error)) from None
    from engine.isolated import run_isolated
    from engine.variants import pickled, user_registered

    shipped = pickled(variant) if user_registered(variant) else None  # registered here: the child must learn it
    command = [sys.executable, "-m", "harness.graph_anatomy", variant, *(["--pickled"] if shipped else [])]
    try:  # in a session of its own: the engine's code runs there
        child = run_isolated(command, timeout_s, stdin_text=shipped or "")
    except subprocess.TimeoutExpired:
        raise UsageError(f"explaining {variant!r} did not finish in {timeout_s:g} s (an op that hangs?)") from None
    if child.returncode != 0 or not child.stdout.strip():
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        raise UsageError(f"explaining {variant!r} failed: {lines[-1] if lines else f'exit status {child.returncode}'}")
    return json.loads(child.stdout.splitlines()[-1])


def rows(found: dict[str, Any]) -> list[tuple[str, str]]:
    """The classification as (aspect, finding) rows."""
    if found["backward"]:
        grads = f"intermediates {found['intermediate_grads']} after backward; retain_grad=True: {found['retain_grad']}"
    else:
        grads = "no backward pass (no graph)"
    no_grad = ("available: " + ", ".join(found["no_grad_mode"])) if found["no_grad_mode"] else "not found"
    held = found["containers_in_cycles_per_graph"]
    containers = f"{found['containers_per_op']:.1f} per op while a graph is built"
    if held:
        containers += f"; {held} held in cycles per depth-{found['depth']} graph until a collection"
    return [
        ("graph ownership", OWNERSHIP[found["ownership"]]),
        ("grads", grads),
        ("no-grad mode", no_grad),
        ("GC containers", containers),
    ]


def text(found: dict[str, Any], pictures: list[Path]) -> str:
    lines = [f"{found['variant']}: what it does to memory (a chain of {found['depth']} {found['op']} ops on "
             f"{found['size']:,}-element arrays, Python {found['python']})"]
    table = rows(found)
    width = max(len(aspect) for aspect, _ in table)
    lines += [f"  {aspect:<{width}}  {finding}" for aspect, finding in table]
    for cycle in found["cycles"]:
        lines.append(f"the cycle ({cycle['count']} in the graph, one per op)" if cycle["count"] > 1 else "the cycle")
        for edge in cycle["edges"]:
            lines.append(f"  {edge}" + ("   <- closes it" if edge in cycle["closing"] else ""))
        if cycle["fix"]:
            lines.append(f"  fix: {cycle['fix']}")
    if not found["cycles"] and found["ownership"] != "cycles":
        lines.append("no reference cycle: nothing waits for the collector")
    if pictures:
        lines.append("picture: " + ", ".join(str(p) for p in pictures))
    return "\n".join(lines)


def slug(variant: str) -> str:
    """A file name for a variant (`file:/a/b/step16.py` -> `file-step16`)."""
    if ":" in variant:
        kind, where = variant.split(":", 1)
        variant = f"{kind}-{Path(where).stem if kind == 'file' else where}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", variant).strip("-") or "variant"


def explain(variant: str, out: Path | None = None, as_json: bool = False) -> str:
    """What `harness explain` prints; the pictures go under `out` (None: none drawn)."""
    from harness.graph_picture import write_pictures

    found = examine(variant)
    pictures = write_pictures(found, Path(out) / slug(variant)) if out is not None else []
    if as_json:
        return json.dumps({**found, "pictures": [str(p) for p in pictures]}, indent=2)
    return text(found, pictures)
