"""The small interface every workload is written against.

A workload never imports an engine. It receives an `EngineAPI` and uses only:
`variable(ndarray)`, the ops (`square`, `exp`, `add`, `mul`, `sub`, `neg` as
attributes, and any other op the engine has through `op("matmul")`),
`backward(y, retain_grad=...)`, `grad(v)`, and `configured()`, the context in
which the variant's settings are in force (for `no_grad`, no graph is
recorded inside it). An experiment lists the ops it calls (`Experiment.ops`):
an engine that lacks one is refused before any trial starts (`offered_ops`).
The runner additionally reads `variable_type` and
`function_type` (to count live graph objects) and `numpy_visible` (whether
tracemalloc's numpy domain sees the engine's buffers).

`DezeroStyleEngine` adapts any module that offers the DeZero names
(`Variable`, `square`, ...): this engine, the official DeZero, or a user's
own notebook code saved as a file.
"""
from __future__ import annotations

import contextlib
import inspect
from types import ModuleType
from typing import Any, Callable, ContextManager, Iterator, Protocol

import numpy as np

OP_NAMES = ("square", "exp", "add", "mul", "sub", "neg")


class BackwardUnavailable(RuntimeError):
    """The variant records no graph, so it has no backward pass."""


class EngineAPI(Protocol):
    name: str
    variable_type: type | None
    function_type: type | None
    numpy_visible: bool
    can_backward: bool

    def variable(self, array: np.ndarray) -> Any: ...
    def square(self, x: Any) -> Any: ...
    def exp(self, x: Any) -> Any: ...
    def add(self, x0: Any, x1: Any) -> Any: ...
    def mul(self, x0: Any, x1: Any) -> Any: ...
    def sub(self, x0: Any, x1: Any) -> Any: ...
    def neg(self, x: Any) -> Any: ...
    def op(self, name: str) -> Callable[..., Any]: ...
    def backward(self, y: Any, retain_grad: bool = False) -> None: ...
    def grad(self, x: Any) -> np.ndarray | None: ...
    def configured(self) -> ContextManager[None]: ...


def offered_ops(source: Any) -> frozenset[str]:
    """The ops an engine module (or a plugin's own engine object) offers: its
    public functions, so an op the seeds never had (`matmul`) counts too
    (classes such as `Variable` are not ops)."""
    return frozenset(name for name in dir(source) if not name.startswith("_")
                     and callable(value := getattr(source, name, None)) and not isinstance(value, type))


def named_op(source: Any, engine_name: str, name: str) -> Callable[..., Any]:
    function = getattr(source, name, None) if not name.startswith("_") else None
    if not callable(function):
        raise NotImplementedError(f"engine {engine_name!r} does not provide {name!r}")
    return function


def _missing_op(module_name: str, op: str) -> Callable[..., Any]:
    def op_not_provided(*args: Any) -> Any:
        raise NotImplementedError(f"engine {module_name!r} does not provide {op!r}")

    return op_not_provided


class DezeroStyleEngine:
    """An `EngineAPI` over a module with the DeZero names.

    `settings` are `Config` attributes set inside `configured()` and restored
    after it, which is how the built-in variants differ.
    """

    numpy_visible = True

    def __init__(
        self,
        module: ModuleType,
        name: str,
        settings: dict[str, Any] | None = None,
        can_backward: bool = True,
        functions: ModuleType | None = None,
    ) -> None:
        if not hasattr(module, "Variable"):
            raise AttributeError(f"engine {name!r} has no 'Variable'")
        self.module = module
        # Where ops beyond the module's own live (the official DeZero's `dezero.functions`).
        self.functions = functions
        self.name = name
        self.settings = dict(settings or {})
        self.can_backward = can_backward
        self.variable_type = module.Variable
        self.function_type = getattr(module, "Function", None)
        for op in OP_NAMES:
            setattr(self, op, getattr(module, op, None) or _missing_op(name, op))
        # Step 16-17 notebooks have `backward(self)`; step 18 added retain_grad.
        params = inspect.signature(module.Variable.backward).parameters
        self._backward_takes_retain_grad = "retain_grad" in params

    def variable(self, array: np.ndarray) -> Any:
        return self.module.Variable(array)

    def op(self, name: str) -> Callable[..., Any]:
        """Any op of the engine's module by name (`op("matmul")`)."""
        if self.functions is not None and not callable(getattr(self.module, name, None)):
            return named_op(self.functions, self.name, name)
        return named_op(self.module, self.name, name)

    def backward(self, y: Any, retain_grad: bool = False) -> None:
        if not self.can_backward:
            raise BackwardUnavailable(
                f"variant {self.name!r} records no graph (enable_backprop=False): it has no backward pass"
            )
        if self._backward_takes_retain_grad:
            y.backward(retain_grad=retain_grad)
        else:
            y.backward()

    def grad(self, x: Any) -> np.ndarray | None:
        grad = x.grad
        # The official DeZero's full core (steps 33+) keeps grads as Variables: their array.
        return grad.data if isinstance(grad, self.variable_type) else grad

    @contextlib.contextmanager
    def configured(self) -> Iterator[None]:
        config = getattr(self.module, "Config", None)
        if self.settings and config is None:
            raise AttributeError(f"engine {self.name!r} has no Config to apply {self.settings}")
        saved = {key: getattr(config, key) for key in self.settings}
        for key, value in self.settings.items():
            setattr(config, key, value)
        try:
            yield
        finally:
            for key, value in saved.items():
                setattr(config, key, value)


class ProvidedEngine:
    """A plugin's own engine (`ENGINE = ...` or `def engine()` in the file),
    for engines without the DeZero names (micrograd's `Value`). It needs
    `variable(ndarray)` and the ops a workload calls; the rest has defaults:
    no type to count (`variable_type`, `function_type` None), numpy visible,
    backward through `y.backward()`, `grad(x)` as `x.grad`, no settings."""

    def __init__(self, engine: Any, name: str) -> None:
        self._engine = engine
        self.name = name
        self.variable_type = getattr(engine, "variable_type", None)
        self.function_type = getattr(engine, "function_type", None)
        self.numpy_visible = getattr(engine, "numpy_visible", True)
        self.can_backward = getattr(engine, "can_backward", True)
        for op in OP_NAMES:
            setattr(self, op, getattr(engine, op, None) or _missing_op(name, op))

    def variable(self, array: np.ndarray) -> Any:
        return self._engine.variable(array)

    def op(self, name: str) -> Callable[..., Any]:
        return named_op(self._engine, self.name, name)

    def backward(self, y: Any, retain_grad: bool = False) -> None:
        if hasattr(self._engine, "backward"):
            self._engine.backward(y, retain_grad=retain_grad)
        else:
            y.backward()

    def grad(self, x: Any) -> np.ndarray | None:
        return self._engine.grad(x) if hasattr(self._engine, "grad") else getattr(x, "grad", None)

    def configured(self) -> ContextManager[None]:
        configured = getattr(self._engine, "configured", None)
        return configured() if configured is not None else contextlib.nullcontext()
