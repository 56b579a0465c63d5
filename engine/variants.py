"""Named engine configurations that the runner can enumerate and plug into any workload.

A `Variant` is a name, where it comes from, one line on what differs, and
`load()`, which returns an `EngineAPI` (see `engine.interface`). `load` is
called only in the process that runs the trial, so a variant whose engine is
an optional extra costs nothing until it is chosen.

To add one of your own, register it before the run starts:

    from engine.variants import Variant, register
    register(Variant("mine", "my notebook", "step 17 with ...", load=my_loader))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.interface import DezeroStyleEngine, EngineAPI


class UnknownVariantError(ValueError):
    pass


@dataclass(frozen=True)
class Variant:
    name: str
    origin: str
    description: str
    load: Callable[[], EngineAPI] = field(repr=False, compare=False)
    # Set when the engine is an optional extra: the command that installs it.
    install_hint: str | None = None
    # Whether load() can succeed here (False when an extra is missing).
    available: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)


def _ours(name: str, can_backward: bool = True, **settings: object) -> Callable[[], EngineAPI]:
    def load() -> EngineAPI:
        import engine

        return DezeroStyleEngine(engine, name, settings, can_backward=can_backward)

    return load


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> None:
    _REGISTRY[variant.name] = variant


for _variant in (
    Variant(
        "strongref",
        "step 16",
        "Function holds its outputs strongly: every graph is a reference cycle that only "
        "the cyclic GC frees; backward keeps every grad",
        _ours("strongref", weak_outputs=False, free_intermediate_grads=False),
    ),
    Variant(
        "weakref",
        "step 17",
        "outputs held by weakref.ref: a graph is freed by reference counting when the last "
        "user reference drops; backward keeps every grad",
        _ours("weakref", weak_outputs=True, free_intermediate_grads=False),
    ),
    Variant(
        "retain_grad",
        "step 18.1",
        "as weakref, but backward frees intermediate grads unless called with retain_grad=True",
        _ours("retain_grad", weak_outputs=True, free_intermediate_grads=True),
    ),
    Variant(
        "no_grad",
        "steps 18.3-18.5",
        "runs with enable_backprop=False: no graph is recorded, intermediates die at once; "
        "no backward pass",
        _ours("no_grad", can_backward=False, enable_backprop=False),
    ),
):
    register(_variant)


def variant_names() -> list[str]:
    return list(_REGISTRY)


def all_variants() -> list[Variant]:
    return list(_REGISTRY.values())


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {name!r}; choose from: {', '.join(_REGISTRY)}"
        ) from None
