"""Layers (steps 44-45): objects that own Parameters and compute with them.

A Layer finds its Parameters and sub-Layers by attribute assignment, so
`params()` walks them without the layer listing them. A Layer keeps no
reference to its inputs or outputs: the graph a call builds is held only by
the variables the caller keeps.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

from engine.core import Parameter, Variable
from engine.functions import linear, sigmoid


class Layer:
    def __init__(self) -> None:
        self._param_names: list[str] = []

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, (Parameter, Layer)) and name not in self._param_names:
            self._param_names.append(name)
        super().__setattr__(name, value)

    def __call__(self, *inputs: Any) -> Variable:
        return self.forward(*inputs)

    def forward(self, *inputs: Any) -> Variable:
        raise NotImplementedError()

    def params(self) -> Iterator[Parameter]:
        """Every Parameter of this layer and of its sub-layers, in assignment order."""
        for name in self._param_names:
            obj = getattr(self, name)
            if isinstance(obj, Layer):
                yield from obj.params()
            else:
                yield obj

    def cleargrads(self) -> None:
        for param in self.params():
            param.cleargrad()


class Linear(Layer):
    """y = x @ W + b, W of shape (in_size, out_size).

    With `in_size=None`, W is created on the first call from the input's
    width (as in the book). `rng` draws the initial W (default: a fresh
    unseeded generator); b starts at zero, or is absent with `nobias=True`.
    """

    def __init__(
        self,
        out_size: int,
        in_size: int | None = None,
        nobias: bool = False,
        dtype: np.dtype | type = np.float32,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.out_size = out_size
        self.in_size = in_size
        self.dtype = dtype
        self.rng = rng if rng is not None else np.random.default_rng()
        self.W = Parameter(None, name="W")
        if in_size is not None:
            self._init_W()
        self.b = None if nobias else Parameter(np.zeros(out_size, dtype=dtype), name="b")

    def _init_W(self) -> None:
        scale = np.sqrt(1 / self.in_size)  # keeps the output's variance near the input's
        self.W.data = (self.rng.standard_normal((self.in_size, self.out_size)) * scale).astype(self.dtype)

    def forward(self, x: Any) -> Variable:
        if self.W.data is None:
            self.in_size = x.shape[1]
            self._init_W()
        return linear(x, self.W, self.b)


class MLP(Layer):
    """Fully connected layers of the given output sizes, `activation` between them (not after the last)."""

    def __init__(
        self,
        sizes: Sequence[int],
        activation: Callable[[Any], Variable] = sigmoid,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.layers = []
        for i, size in enumerate(sizes):
            layer = Linear(size, rng=rng)
            setattr(self, f"l{i}", layer)
            self.layers.append(layer)

    def forward(self, x: Any) -> Variable:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
