"""The DeZero core of steps 7-22 and 37-41: Variable, Function, Config, and the
ops that Variable's operators and methods call (arithmetic with broadcasting,
reshape, transpose, sum, sum_to, broadcast_to, matmul).

The memory ideas of steps 16-18 are each a line or two, switched by `Config`
so that the variants in `engine.variants` are configurations of this one
engine rather than copies of it:

- step 17, `Config.weak_outputs`: a Function holds its outputs through
  `weakref.ref`, which breaks the Function -> output -> Function cycle;
- step 18.1, `Config.free_intermediate_grads`: backward drops the grads of
  non-leaf variables unless called with `retain_grad=True`;
- step 18.3, `Config.enable_backprop`: no graph is recorded at all.

A Function holds its inputs (`self.inputs`) whenever it records a graph, so
a backward that needs an input's data or shape reads it from there and the
Function keeps nothing else.
"""
from __future__ import annotations

import contextlib
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
    if isinstance(x, np.ndarray):  # the common case first: np.isscalar is slow on an array
        return x
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

        Iterative (a 100,000-deep chain needs no recursion) and ordered by
        generation, so a function runs only after every function that feeds
        its outputs' grads, in O(n) on any DAG.
        """
        if self.computed_without_graph:
            raise RuntimeError(
                "backward() through a variable computed under no_grad(): no graph was "
                "recorded (Config.enable_backprop was False), so there is nothing to "
                "backpropagate through"
            )
        if self.grad is None:
            self.grad = np.ones_like(self.data)
        if self.creator is None:
            return

        # waiting[g]: the functions of generation g reached so far, in the
        # order reached (None until one is). A function's inputs' creators all
        # have smaller generations than it has, so taking the lists from the
        # largest generation down runs each function after every function
        # that feeds its outputs' grads, with no heap or sort.
        waiting: list[list[Function] | None] = [None] * (self.creator.generation + 1)
        waiting[-1] = [self.creator]
        seen: set[Function] = {self.creator}
        free_grads = Config.free_intermediate_grads and not retain_grad

        while waiting:
            for f in waiting.pop() or ():
                # Fix (not in the seeds): with weak outputs, an output of a
                # multi-output Function that the user already dropped is dead
                # (output() is None); it got no grad, so it passes None, as a live
                # output that received no grad does, instead of raising AttributeError.
                refs = f.outputs
                if len(refs) == 1:  # one output, the common case: no lists
                    y = refs[0]()
                    outputs = None
                    gxs = f.backward(None if y is None else y.grad)
                else:
                    outputs = [output() for output in refs]
                    gxs = f.backward(*[None if y is None else y.grad for y in outputs])
                if not isinstance(gxs, tuple):
                    gxs = (gxs,)

                # An index into f.inputs, not zip(f.inputs, gxs): the zip and
                # its two iterators would be three more GC-tracked objects per
                # function. As with zip, the shorter of the two decides: the
                # inputs after the last grad get none (SoftmaxCrossEntropy
                # returns none for its labels), and grads beyond the last
                # input are dropped (a try costs nothing until it catches).
                inputs, i = f.inputs, 0
                for gx in gxs:
                    try:
                        x = inputs[i]
                    except IndexError:
                        break
                    i += 1
                    # A new array, never `+=`: gx may be the very array another
                    # input or output holds (Add.backward returns gy twice).
                    grad = x.grad
                    x.grad = gx if grad is None else grad + gx
                    creator = x.creator
                    if creator is not None and creator not in seen:
                        seen.add(creator)
                        generation = creator.generation
                        functions = waiting[generation]
                        if functions is None:
                            waiting[generation] = [creator]
                        else:
                            functions.append(creator)

                # Only now that the inputs' grads are made, as in the seeds.
                if free_grads:
                    if outputs is None:  # the one output is y
                        if y is not None:
                            y.grad = None
                    else:
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

    def __matmul__(self, other: Any) -> "Variable":
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> "Variable":
        return matmul(other, self)

    # Tensor methods (steps 38-39), as in the book.
    def reshape(self, *shape: Any) -> "Variable":
        """`x.reshape(2, 3)` or `x.reshape((2, 3))`."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return reshape(self, tuple(shape))

    def transpose(self, *axes: Any) -> "Variable":
        """`x.transpose()` reverses the axes; `x.transpose(1, 0, 2)` or `x.transpose((1, 0, 2))` permutes them."""
        if len(axes) == 0 or axes == (None,):
            axes = None
        elif len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        return transpose(self, axes)

    @property
    def T(self) -> "Variable":
        return transpose(self)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Variable":
        return sum(self, axis, keepdims)


class Parameter(Variable):
    """A Variable that a Layer owns and an optimizer updates (step 44)."""


class Function:
    """An op of the graph: `forward` and `backward` work on raw ndarrays."""

    def __call__(self, *args: Any) -> Variable | list[Variable]:
        # Every op runs this, so it is written for speed (on Python 3.11):
        # each input is made a Variable only if it is not one yet; the
        # generation is the largest of the inputs'; no loop runs where the
        # common case needs none (a loop's iterator is one more object for
        # the cyclic GC to count, a comprehension a call of its own); and
        # forward gets one or two arrays as plain arguments (forward(*xs)
        # makes a bound method and a tuple). The lists are the ones every op
        # has always made: a new list comes off CPython's free list of lists
        # when it holds one, so which lists are made and freed decides
        # whether a new list (the engine's or a probe's) counts towards a
        # gen-0 collection.
        if len(args) == 2:  # a binary op, the most common
            x0, x1 = args
            if not isinstance(x0, Variable):
                x0 = as_variable(x0)
            if not isinstance(x1, Variable):
                x1 = as_variable(x1)
            inputs, xs = [x0, x1], [x0.data, x1.data]
            generation = x0.generation if x0.generation > x1.generation else x1.generation
            ys = self.forward(xs[0], xs[1])
        else:
            inputs, xs = [], []
            generation = 0
            for x in args:
                if not isinstance(x, Variable):
                    x = as_variable(x)
                inputs.append(x)
                xs.append(x.data)
                if x.generation > generation:
                    generation = x.generation
            ys = self.forward(xs[0]) if len(xs) == 1 else self.forward(*xs)
        # One output is the common case, and a numpy scalar (what numpy
        # returns from an op on 0-d arrays) is checked for first: an
        # isinstance that fails costs more than one that succeeds.
        if isinstance(ys, np.generic):
            outputs = [Variable(np.array(ys))]
        elif isinstance(ys, tuple):
            outputs = [Variable(as_array(y)) for y in ys]
        else:
            outputs = [Variable(as_array(ys))]

        if Config.enable_backprop:
            self.generation = generation
            self.inputs = inputs
            # Step 17: with weakref.ref the outputs do not keep their creator
            # alive, so a graph is freed by reference counting alone; with
            # StrongRef (step 16) every graph is a cycle for the cyclic GC.
            ref = weakref.ref if Config.weak_outputs else StrongRef
            self.outputs = refs = []
            if len(outputs) == 1:  # one output, the common case: no loop
                output = outputs[0]
                output.creator = self  # output.set_creator(self), inlined
                output.generation = generation + 1
                refs.append(ref(output))
                return output
            for output in outputs:
                output.creator = self
                output.generation = generation + 1
                refs.append(ref(output))
        else:
            for output in outputs:
                output.computed_without_graph = True

        return outputs if len(outputs) > 1 else outputs[0]

    def forward(self, *xs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError()

    def backward(self, *gys: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        raise NotImplementedError()


def sum_to_shape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `x` over the axes numpy broadcast to get from `shape` to `x.shape` (step 40's utils.sum_to)."""
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1)
    return x.sum(axis=axes, keepdims=True).reshape(shape)


# The binary ops broadcast (step 40). Their backward sums a grad back to its
# input's shape only when the two inputs' shapes differ, so the common
# same-shape case costs one tuple comparison.


class Add(Function):
    def forward(self, x0, x1):
        return x0 + x1

    def backward(self, gy):
        s0, s1 = self.inputs[0].data.shape, self.inputs[1].data.shape
        if s0 == s1:
            return gy, gy
        return sum_to_shape(gy, s0), sum_to_shape(gy, s1)


class Mul(Function):
    def forward(self, x0, x1):
        return x0 * x1

    def backward(self, gy):
        x0, x1 = self.inputs[0].data, self.inputs[1].data
        if x0.shape == x1.shape:
            return gy * x1, gy * x0
        return sum_to_shape(gy * x1, x0.shape), sum_to_shape(gy * x0, x1.shape)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Sub(Function):
    def forward(self, x0, x1):
        return x0 - x1

    def backward(self, gy):
        s0, s1 = self.inputs[0].data.shape, self.inputs[1].data.shape
        if s0 == s1:
            return gy, -gy
        return sum_to_shape(gy, s0), sum_to_shape(-gy, s1)


class Div(Function):
    def forward(self, x0, x1):
        return x0 / x1

    def backward(self, gy):
        x0, x1 = self.inputs[0].data, self.inputs[1].data
        gx0 = gy / x1
        gx1 = gy * (-x0 / x1**2)
        if x0.shape == x1.shape:
            return gx0, gx1
        return sum_to_shape(gx0, x0.shape), sum_to_shape(gx1, x1.shape)


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


# Tensor ops (steps 38-41). Reshape, transpose and broadcast_to return numpy
# views, so their outputs share their input's buffer; the grads that sum and
# sum_to pass back are read-only broadcast views of gy (zero-copy, as in the
# book and PyTorch's expand).


class Reshape(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.inputs[0].data.shape)


class Transpose(Function):
    def __init__(self, axes: tuple[int, ...] | None = None) -> None:
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        return gy.transpose(np.argsort([axis % gy.ndim for axis in self.axes]))  # the inverse permutation


class Sum(Function):
    def __init__(self, axis: int | tuple[int, ...] | None, keepdims: bool) -> None:
        self.axis = axis
        self.keepdims = keepdims

    def forward(self, x):
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        shape = self.inputs[0].data.shape
        if self.axis is not None and not self.keepdims:
            gy = np.expand_dims(gy, self.axis)  # put back the summed axes, as size 1
        return np.broadcast_to(gy, shape)


class SumTo(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        return sum_to_shape(x, self.shape)

    def backward(self, gy):
        return np.broadcast_to(gy, self.inputs[0].data.shape)


class BroadcastTo(Function):
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    def forward(self, x):
        return np.broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to_shape(gy, self.inputs[0].data.shape)


class MatMul(Function):
    """Matrix product of 2-D arrays (step 41)."""

    def forward(self, x, W):
        return x @ W

    def backward(self, gy):
        x, W = self.inputs[0].data, self.inputs[1].data
        return gy @ W.T, x.T @ gy


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


def reshape(x: Any, shape: tuple[int, ...]) -> Variable:
    """No op, and no graph node, when `x` already has `shape` (as in the book)."""
    x = as_variable(x)
    if x.shape == tuple(shape):
        return x
    return Reshape(tuple(shape))(x)


def transpose(x: Any, axes: tuple[int, ...] | None = None) -> Variable:
    return Transpose(None if axes is None else tuple(axes))(x)


def sum(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Variable:  # noqa: A001 - DeZero's name
    if isinstance(axis, list):
        axis = tuple(axis)
    return Sum(axis, keepdims)(x)


def sum_to(x: Any, shape: tuple[int, ...]) -> Variable:
    """Sum `x` down to `shape` (the reverse of broadcast_to); no op when it already has it."""
    x = as_variable(x)
    if x.shape == tuple(shape):
        return x
    return SumTo(tuple(shape))(x)


def broadcast_to(x: Any, shape: tuple[int, ...]) -> Variable:
    """Broadcast `x` to `shape`; no op when it already has it."""
    x = as_variable(x)
    if x.shape == tuple(shape):
        return x
    return BroadcastTo(tuple(shape))(x)


def matmul(x: Any, W: Any) -> Variable:
    return MatMul()(x, W)
