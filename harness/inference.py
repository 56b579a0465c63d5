"""Which model judges a variant's trials, and why.

A built-in variant has its own model; an external engine may declare one
(`Variant.model_as`); a user's engine (`file:`, `module:`, or one registered
without `model_as`) is examined at plan time (`harness explain`'s anatomy, in
a fresh process) and judged by the model its behaviour implies:

    held by reference cycles, every grad kept        -> strongref's
    freed by reference counting, every grad kept     -> weakref's
    freed by reference counting, intermediates freed,
      retain_grad=True honoured                      -> retain_grad's
    no graph recorded                                -> no_grad's

Bytes follow from that; object counts follow from the engine's own
containers per graph, which the anatomy measures (the book's step 16 leaves
4 per op and its leaf, ours 5: `graph_containers_per_op`,
`graph_containers_fixed`). What was chosen and why is recorded in every
summary row, so reading a run never needs the engine again.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any, Callable

from harness.errors import UsageError
from harness.model import model_source

INFERRED = "inferred by explain"


@dataclass(frozen=True)
class ModelChoice:
    variant: str | None  # the built-in variant whose model judges; None: no model
    source: str | None  # "built-in", "declared", INFERRED, or None
    reason: str
    containers: dict[str, int] | None = None  # per_op, fixed: the engine's own count, when inferred

    def columns(self) -> dict[str, Any]:
        return {"model_variant": self.variant, "model_source": self.source, "model_reason": self.reason,
                "graph_containers_per_op": (self.containers or {}).get("per_op"),
                "graph_containers_fixed": (self.containers or {}).get("fixed")}


def infer(found: dict[str, Any]) -> ModelChoice:
    """The model an explained engine's behaviour implies."""
    from harness.explain import OWNERSHIP

    ownership, grads = found["ownership"], found.get("intermediate_grads")
    said = f"{OWNERSHIP[ownership]}; intermediate grads {grads or 'n/a'}"
    if ownership == "none":
        return ModelChoice("no_grad", INFERRED, OWNERSHIP["none"])
    if ownership == "cycles" and grads == "kept":
        return ModelChoice("strongref", INFERRED, said, found.get("cycle_containers"))
    if ownership == "refcount" and grads == "kept":
        return ModelChoice("weakref", INFERRED, said)
    if ownership == "refcount" and grads == "freed" and found.get("retain_grad") == "honoured":
        return ModelChoice("retain_grad", INFERRED, said + ", retain_grad=True honoured")
    return ModelChoice(None, None, f"no built-in model behaves so ({said})")


def _needs_inference(variant: str) -> bool:
    from engine.adapters.plugin import is_plugin
    from engine.variants import all_variants

    if is_plugin(variant):
        return True
    external = {"torch", "torch_no_grad", "dezero_official", "dezero_official_core", "dezero_official_no_grad"}
    # a variant registered by the user: ours are built in, the external engines declare or deliberately have none
    return variant not in external and any(v.name == variant for v in all_variants())


def known(variant: str) -> ModelChoice:
    """The model a variant has without examining it: built-in or declared, else none."""
    model_variant, source = model_source(variant)
    if source is None:
        return ModelChoice(None, None, "no model for this engine")
    why = "its own model" if source == "built-in" else f"declared: behaves as {model_variant}"
    return ModelChoice(model_variant, source, why)


def choose(variant: str, examine: Callable[[str], dict[str, Any]] | None = None) -> ModelChoice:
    """The model for a run's trials of `variant`: known, else inferred by examining a user's engine."""
    choice = known(variant)
    if choice.source is not None or not _needs_inference(variant):
        return choice
    if examine is None:
        from harness.explain import examine
    try:
        return infer(examine(variant))
    except (UsageError, OSError, subprocess.SubprocessError) as error:
        return ModelChoice(None, None, f"explain could not examine it: {error}")


# How long a run waits for explain to examine a user's engine before it
# measures the engine without a model (an engine whose op hangs).
EXAMINE_TIMEOUT_S = 60.0


def choose_all(variants: list[str], timeout_s: float | None = None) -> dict[str, ModelChoice]:
    from harness.explain import examine

    limit = min(EXAMINE_TIMEOUT_S, timeout_s) if timeout_s else EXAMINE_TIMEOUT_S
    return {variant: choose(variant, lambda name: examine(name, timeout_s=limit)) for variant in variants}
