"""The DeZero core of steps 7-22: Variable, Function, the ops and Config.

The memory ideas of steps 16-18 are each a line or two, switched by `Config`
so that the variants in `engine.variants` are configurations of this one
engine rather than copies of it:

- step 17, `Config.weak_outputs`: a Function holds its outputs through
  `weakref.ref`, which breaks the Function -> output -> Function cycle;
- step 18.1, `Config.free_intermediate_grads`: backward drops the grads of
  non-leaf variables unless called with `retain_grad=True`;
- step 18.3, `Config.enable_backprop`: no graph is recorded at all.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import weakref
from typing import Any, Iterator

import numpy as np


class Config:
    """Engine-wide switches, used as a class (one place for settings, step 18.3)."""

    enable_backprop = True
    weak_outputs = True
    free_intermediate_grads = True


@contextlib.contextmanager
def using_config(name: str, value: Any) -> Iterator[None]:
    """Set `Config.<name>` to `value` for the block; restore it even if the block raises."""
    if not hasattr(Config, name):
        raise AttributeError(f"Config has no setting {name!r}; settings: {config_names()}")
    old_value = getattr(Config, name)
    setattr(Config, name, value)
    try:
        yield
    finally:
        setattr(Config, name, old_value)


def no_grad() -> contextlib.AbstractContextManager:
    """Run the block without recording a graph (step 18.5)."""
    return using_config("enable_backprop", False)


def config_names() -> list[str]:
    return [name for name in vars(Config) if not name.startswith("_")]


class StrongRef:
    """Holds an output the way step 16 does, behind the call interface of `weakref.ref`,
    so backward reads `output()` whichever way the output is held."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self) -> Any:
        return self.obj


def as_array(x: Any) -> np.ndarray:
    """numpy returns scalars (np.float64) from ops on 0-d arrays; Variables hold arrays."""
    if np.isscalar(x):
        return np.array(x)
    return x


def as_variable(obj: Any) -> "Variable":
    if isinstance(obj, Variable):
        return obj
    return Variable(as_array(obj))


class Variable:
    # Makes `ndarray * Variable` call Variable.__rmul__ instead of numpy
    # broadcasting over the Variable as an object.
    __array_priority__ = 200

    # True for the output of a Function run under no_grad: it has no creator,
    # and backward must say so instead of silently stopping at it.
    computed_without_graph = False

    def __init__(self, data: np.ndarray | None, name: str | None = None) -> None:
        if data is not None and not isinstance(data, np.ndarray):
            raise TypeError(f"{type(data)} is not supported: Variable holds a numpy.ndarray or None")
        self.data = data
        self.name = name
        self.grad: np.ndarray | None = None
        self.creator: Function | None = None
        self.generation = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        if self.data is None:
            return "variable(None)"
        p = str(self.data).replace("\n", "\n" + " " * 9)
        return "variable(" + p + ")"

    def set_creator(self, func: "Function") -> None:
        self.creator = func
        self.generation = func.generation + 1

    def cleargrad(self) -> None:
        self.grad = None

    def backward(self, retain_grad: bool = False) -> None:
        """Backpropagate from this variable to every variable of its graph.

        Iterative (a 100,000-deep chain needs no recursion) and ordered by a
        heap on generation, so a function runs only after every function that
        feeds its outputs' grads, in O(n log n) on any DAG.
        """
        if self.computed_without_graph:
            raise RuntimeError(
                "backward() through a variable computed under no_grad(): no graph was "
                "recorded (Config.enable_backprop was False), so there is nothing to "
                "backpropagate through"
            )
        if self.grad is None:
            self.grad = np.ones_like(self.data)

        # Heap entries are (-generation, insertion order, function): the
        # largest generation pops first; the counter breaks ties without
        # comparing Function objects.
        candidates: list[tuple[int, int, Function]] = []
        seen: set[Function] = set()
        order = itertools.count()

        def add_func(f: Function) -> None:
            if f not in seen:
                seen.add(f)
                heapq.heappush(candidates, (-f.generation, next(order), f))

        if self.creator is not None:
            add_func(self.creator)
        free_grads = Config.free_intermediate_grads and not retain_grad

        while candidates:
            f = heapq.heappop(candidates)[2]
            # Fix (not in the seeds): with weak outputs, an output of a
            # multi-output Function that the user already dropped is dead
            # (output() is None); it got no grad, so it passes None, as a live
            # output that received no grad does, instead of raising AttributeError.
            outputs = [output() for output in f.outputs]
            gys = [None if y is None else y.grad for y in outputs]
            gxs = f.backward(*gys)
            if not isinstance(gxs, tuple):
                gxs = (gxs,)

            for x, gx in zip(f.inputs, gxs):
                # A new array, never `+=`: gx may be the very array another
                # input or output holds (Add.backward returns gy twice).
                x.grad = gx if x.grad is None else x.grad + gx
                if x.creator is not None:
                    add_func(x.creator)

            if free_grads:
                for y in outputs:
                    if y is not None:
                        y.grad = None

    # Operators (step 20-22). The functions they call are defined below in
    # this module and looked up when the operator runs.
    def __add__(self, other: Any) -> "Variable":
        return add(self, other)

    def __radd__(self, other: Any) -> "Variable":
        return add(other, self)

    def __mul__(self, other: Any) -> "Variable":
        return mul(self, other)

    def __rmul__(self, other: Any) -> "Variable":
        return mul(other, self)

    def __neg__(self) -> "Variable":
        return neg(self)

    def __sub__(self, other: Any) -> "Variable":
        return sub(self, other)

    def __rsub__(self, other: Any) -> "Variable":
        return sub(other, self)

    def __truediv__(self, other: Any) -> "Variable":
        return div(self, other)

    def __rtruediv__(self, other: Any) -> "Variable":
        return div(other, self)

    def __pow__(self, c: Any) -> "Variable":
        return pow(self, c)


class Function:
    """An op of the graph: `forward` and `backward` work on raw ndarrays."""

    def __call__(self, *inputs: Any) -> Variable | list[Variable]:
        inputs = [as_variable(x) for x in inputs]
        xs = [x.data for x in inputs]
        ys = self.forward(*xs)
        if not isinstance(ys, tuple):
            ys = (ys,)
        outputs = [Variable(as_array(y)) for y in ys]

        if Config.enable_backprop:
            self.generation = max(x.generation for x in inputs)
            for output in outputs:
                output.set_creator(self)
            self.inputs = inputs
            # Step 17: with weakref.ref the outputs do not keep their creator
            # alive, so a graph is freed by reference counting alone; with
            # StrongRef (step 16) every graph is a cycle for the cyclic GC.
            ref = weakref.ref if Config.weak_outputs else StrongRef
            self.outputs = [ref(output) for output in outputs]
        else:
            for output in outputs:
                output.computed_without_graph = True

        return outputs if len(outputs) > 1 else outputs[0]

    def forward(self, *xs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError()

    def backward(self, *gys: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError()


class Add(Function):
    def forward(self, x0, x1):
        return x0 + x1

    def backward(self, gy):
        return gy, gy


class Mul(Function):
    def forward(self, x0, x1):
        return x0 * x1

    def backward(self, gy):
        x0, x1 = self.inputs[0].data, self.inputs[1].data
        return gy * x1, gy * x0


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Sub(Function):
    def forward(self, x0, x1):
        return x0 - x1

    def backward(self, gy):
        return gy, -gy


class Div(Function):
    def forward(self, x0, x1):
        return x0 / x1

    def backward(self, gy):
        x0, x1 = self.inputs[0].data, self.inputs[1].data
        gx0 = gy / x1
        gx1 = gy * (-x0 / x1**2)
        return gx0, gx1


class Pow(Function):
    def __init__(self, c: Any) -> None:
        self.c = c

    def forward(self, x):
        return x**self.c

    def backward(self, gy):
        x = self.inputs[0].data
        c = self.c
        return c * x ** (c - 1) * gy


class Square(Function):
    def forward(self, x):
        return x**2

    def backward(self, gy):
        x = self.inputs[0].data
        return 2 * x * gy


class Exp(Function):
    def forward(self, x):
        return np.exp(x)

    def backward(self, gy):
        x = self.inputs[0].data
        return np.exp(x) * gy


def add(x0: Any, x1: Any) -> Variable:
    return Add()(x0, x1)


def mul(x0: Any, x1: Any) -> Variable:
    return Mul()(x0, x1)


def neg(x: Any) -> Variable:
    return Neg()(x)


def sub(x0: Any, x1: Any) -> Variable:
    return Sub()(x0, x1)


def div(x0: Any, x1: Any) -> Variable:
    return Div()(x0, x1)


def pow(x: Any, c: Any) -> Variable:  # noqa: A001 - DeZero's name
    return Pow(c)(x)


def square(x: Any) -> Variable:
    return Square()(x)


def exp(x: Any) -> Variable:
    return Exp()(x)
