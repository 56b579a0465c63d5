"""Named engine configurations that the runner can enumerate and plug into any workload.

A `Variant` is a name, where it comes from, one line on what differs, and
`load()`, which returns an `EngineAPI` (see `engine.interface`). `load` is
called only in the process that runs the trial, so a variant whose engine is
an optional extra costs nothing until it is chosen.

To add one of your own, register it before the run starts:

    from engine.variants import Variant, register
    register(Variant("mine", "my notebook", "step 17 with ...", load=my_loader))

or, without registering anything, name a file or module with the DeZero
names: `file:path/to/my_engine.py`, `module:package.module` (see
`engine.adapters.plugin`). External engines (PyTorch, the official DeZero)
are registered here as optional extras: `available()` says whether they are
installed and `install_hint` how to install them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine.adapters import dezero_official, plugin, torch_engine
from engine.interface import DezeroStyleEngine, EngineAPI, ProvidedEngine, offered_ops


class UnknownVariantError(ValueError):
    pass


class BadPluginError(UnknownVariantError):
    """A `file:` or `module:` variant that cannot be used (missing, fails to import, lacks a name);
    `detail`: the import's traceback, where there was one."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


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
    # The built-in variant whose memory behaviour this one has, so an analytic
    # model written for that one applies (the official DeZero's core_simple
    # frees graphs and grads as our retain_grad does); None: no model.
    model_as: str | None = None
    # The ops the engine offers (`engine.interface.offered_ops`), known in the
    # run's process without loading a heavy engine, so a plan whose workload
    # calls an op the engine lacks is refused before any trial starts; None:
    # not known before a trial loads it (a variant registered by the user).
    offers: Callable[[], frozenset[str]] | None = field(default=None, repr=False, compare=False)


def _our_ops() -> frozenset[str]:
    import engine

    return offered_ops(engine)


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
        offers=_our_ops,
    ),
    Variant(
        "weakref",
        "step 17",
        "outputs held by weakref.ref: a graph is freed by reference counting when the last "
        "user reference drops; backward keeps every grad",
        _ours("weakref", weak_outputs=True, free_intermediate_grads=False),
        offers=_our_ops,
    ),
    Variant(
        "retain_grad",
        "step 18.1",
        "as weakref, but backward frees intermediate grads unless called with retain_grad=True",
        _ours("retain_grad", weak_outputs=True, free_intermediate_grads=True),
        offers=_our_ops,
    ),
    Variant(
        "no_grad",
        "steps 18.3-18.5",
        "runs with enable_backprop=False: no graph is recorded, intermediates die at once; "
        "no backward pass",
        _ours("no_grad", can_backward=False, enable_backprop=False),
        offers=_our_ops,
    ),
):
    register(_variant)


def _official_ops() -> frozenset[str]:
    return dezero_official.offered_ops(full_core=False)


def _official_core_ops() -> frozenset[str]:
    return dezero_official.offered_ops(full_core=True)


def _torch(name: str, grad_enabled: bool) -> Callable[[], EngineAPI]:
    def load() -> EngineAPI:
        return torch_engine.TorchEngine(name, grad_enabled=grad_enabled)

    return load


def _official(name: str, can_backward: bool = True, **settings: object) -> Callable[[], EngineAPI]:
    def load() -> EngineAPI:
        return DezeroStyleEngine(dezero_official.load_core_simple(), name, settings, can_backward=can_backward)

    return load


def _official_core(name: str) -> Callable[[], EngineAPI]:
    def load() -> EngineAPI:
        return DezeroStyleEngine(dezero_official.load_core(), name, functions=dezero_official.load_functions())

    return load


for _variant in (
    Variant(
        "torch",
        "PyTorch 2.13.0 CPU",
        "autograd on: requires_grad leaf sharing the numpy buffer (from_numpy), one thread; "
        "graphs freed by reference counting; grads kept on leaves only",
        _torch("torch", grad_enabled=True),
        offers=lambda: frozenset(torch_engine.OPS),
        install_hint=torch_engine.INSTALL_HINT,
        available=torch_engine.torch_available,
    ),
    Variant(
        "torch_no_grad",
        "PyTorch 2.13.0 CPU",
        "inside torch.no_grad(): no graph recorded; no backward pass",
        _torch("torch_no_grad", grad_enabled=False),
        offers=lambda: frozenset(torch_engine.OPS),
        install_hint=torch_engine.INSTALL_HINT,
        available=torch_engine.torch_available,
    ),
    Variant(
        "dezero_official",
        "official DeZero 0.0.13",
        "dezero/core_simple.py (steps 23-32): weakref outputs, backward frees intermediate "
        "grads unless retain_grad=True",
        _official("dezero_official"),
        offers=_official_ops,
        install_hint=dezero_official.INSTALL_HINT,
        available=dezero_official.dezero_available,
        model_as="retain_grad",
    ),
    Variant(
        "dezero_official_core",
        "official DeZero 0.0.13",
        "dezero/core.py (steps 33-60, loaded without the package's failing __init__): grads are Variables, "
        "weakref outputs, backward frees intermediate grads unless retain_grad=True",
        _official_core("dezero_official_core"),
        offers=_official_core_ops,
        install_hint=dezero_official.INSTALL_HINT,
        available=dezero_official.dezero_available,
        model_as="retain_grad",
    ),
    Variant(
        "dezero_official_no_grad",
        "official DeZero 0.0.13",
        "core_simple with Config.enable_backprop=False: no graph recorded; no backward pass",
        _official("dezero_official_no_grad", can_backward=False, enable_backprop=False),
        offers=_official_ops,
        install_hint=dezero_official.INSTALL_HINT,
        available=dezero_official.dezero_available,
        model_as="no_grad",
    ),
):
    register(_variant)


# The variants this package defines; any other name in the registry was
# registered by the user, in a process a trial does not share.
BUILT_IN = frozenset(_REGISTRY)


def user_registered(name: str) -> bool:
    return name in _REGISTRY and name not in BUILT_IN


def pickled(name: str) -> str:
    """A user-registered variant, pickled by value (cloudpickle: its `load`
    may be a notebook's function) for a trial's fresh process."""
    import base64

    import cloudpickle

    return base64.b64encode(cloudpickle.dumps(_REGISTRY[name])).decode("ascii")


def register_pickled(text: str) -> Variant:
    """In a trial: the variant the run's process registered (see `pickled`)."""
    import base64
    import pickle

    variant = pickle.loads(base64.b64decode(text))  # from the run's own process, over the trial's stdin
    register(variant)
    return variant


def plugin_variant(name: str) -> Variant:
    """The variant for `file:PATH.py` or `module:NAME`, with Config settings in
    brackets if given (`file:step18.py[no_grad]`). Its engine is imported
    only by `load()`, in the trial's own process; `check_plugin` imports it
    in a child process first, so a bad file is reported before any trial
    starts and nothing its top-level code does happens to the caller. A
    plugin that provides its own engine (`ENGINE = ...` or `def engine()`)
    is used as it is; otherwise its DeZero names are adapted."""
    try:
        base, settings = plugin.split_settings(name)
    except plugin.PluginError as error:
        raise BadPluginError(str(error)) from None
    where = base.split(":", 1)[1]

    def load() -> EngineAPI:
        try:
            module = plugin.load_plugin(name)
        except plugin.PluginError as error:
            raise BadPluginError(str(error)) from None
        own = plugin.provided_engine(module)
        if own is not None:
            return ProvidedEngine(own, name)
        return DezeroStyleEngine(module, name, settings, can_backward=settings.get("enable_backprop") is not False)

    said = ", ".join(f"{k}={v}" for k, v in settings.items())
    return Variant(name, "user engine", f"DeZero names from {where}" + (f" with {said}" if said else ""), load)


def check_plugin(name: str) -> dict:
    """Raise BadPluginError (one line) if the plugin `name` cannot be used;
    else what the check found of it (`ops`, `provides_engine`, `has_function`)."""
    try:
        return plugin.check_in_child(name)
    except plugin.PluginError as error:
        raise BadPluginError(str(error), error.detail) from None


def variant_names() -> list[str]:
    return list(_REGISTRY)


def all_variants() -> list[Variant]:
    return list(_REGISTRY.values())


def get_variant(name: str) -> Variant:
    if plugin.is_plugin(name):
        return plugin_variant(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {name!r}; choose from: {', '.join(_REGISTRY)}, "
            "or a user engine as file:PATH.py or module:NAME"
        ) from None
