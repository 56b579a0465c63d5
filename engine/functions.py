"""The functions of a small neural network (steps 42-48): activations,
`linear` and the two losses.

Each backward reads what it needs from the Function's inputs, which the graph
holds anyway, or from its output, and recomputes the rest, so none of these
Functions keeps an array of its own.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.core import Function, Variable, sum_to_shape


def softmax_array(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax of an ndarray along `axis`, shifted by the max so exp cannot overflow."""
    y = np.exp(x - x.max(axis=axis, keepdims=True))
    y /= y.sum(axis=axis, keepdims=True)
    return y


class Sigmoid(Function):
    def forward(self, x):
        return np.tanh(x * 0.5) * 0.5 + 0.5  # = 1 / (1 + exp(-x)), without overflow for large -x

    def backward(self, gy):
        y = self.outputs[0]().data  # reads its output, not its input
        return gy * y * (1 - y)


class Tanh(Function):
    def forward(self, x):
        return np.tanh(x)

    def backward(self, gy):
        y = self.outputs[0]().data  # reads its output, not its input
        return gy * (1 - y * y)


class ReLU(Function):
    def forward(self, x):
        return np.maximum(x, 0.0)

    def backward(self, gy):
        return gy * (self.inputs[0].data > 0)


class Log(Function):
    def forward(self, x):
        return np.log(x)

    def backward(self, gy):
        return gy / self.inputs[0].data


class Softmax(Function):
    def __init__(self, axis: int = 1) -> None:
        self.axis = axis

    def forward(self, x):
        return softmax_array(x, self.axis)

    def backward(self, gy):
        y = self.outputs[0]().data  # reads its output, not its input
        gx = y * gy
        return gx - y * gx.sum(axis=self.axis, keepdims=True)


class LinearFunction(Function):
    """`x @ W + b` as one Function (step 43): the product `x @ W` is not kept
    as a graph node, unlike `matmul(x, W) + b`. Inputs (x, W) or (x, W, b)."""

    def forward(self, x, W, b=None):
        y = x @ W
        if b is not None:
            y = y + b
        return y

    def backward(self, gy):
        x, W = self.inputs[0].data, self.inputs[1].data
        gx, gW = gy @ W.T, x.T @ gy
        if len(self.inputs) == 2:
            return gx, gW
        return gx, gW, sum_to_shape(gy, self.inputs[2].data.shape)


class MeanSquaredError(Function):
    """sum((x0 - x1) ** 2) / len(x0), the book's definition (a mean over the
    first axis, as the official DeZero computes it)."""

    def forward(self, x0, x1):
        diff = x0 - x1
        return (diff**2).sum() / len(diff)

    def backward(self, gy):
        x0, x1 = self.inputs[0].data, self.inputs[1].data
        diff = x0 - x1  # recomputed: keeping it would hold one more array per loss
        gx0 = gy * diff * (2.0 / len(diff))
        return sum_to_shape(gx0, x0.shape), sum_to_shape(-gx0, x1.shape)


class SoftmaxCrossEntropy(Function):
    """Mean cross entropy of softmax(x) (x: N x C logits) against integer
    labels t (N,). Differentiable in x only."""

    def forward(self, x, t):
        n = x.shape[0]
        m = x.max(axis=1, keepdims=True)
        log_z = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))  # logsumexp
        log_p = (x - log_z)[np.arange(n), t.ravel()]
        return -log_p.sum() / n

    def backward(self, gy):
        x, t = self.inputs[0].data, self.inputs[1].data
        n = x.shape[0]
        gx = softmax_array(x)  # recomputed from the logits: nothing kept from forward
        gx[np.arange(n), t.ravel()] -= 1
        return gx * (gy / n)


def sigmoid(x: Any) -> Variable:
    return Sigmoid()(x)


def tanh(x: Any) -> Variable:
    return Tanh()(x)


def relu(x: Any) -> Variable:
    return ReLU()(x)


def log(x: Any) -> Variable:
    return Log()(x)


def softmax(x: Any, axis: int = 1) -> Variable:
    return Softmax(axis)(x)


def linear(x: Any, W: Any, b: Any = None) -> Variable:
    """x @ W + b; without b, x @ W."""
    if b is None:
        return LinearFunction()(x, W)
    return LinearFunction()(x, W, b)


def mean_squared_error(x0: Any, x1: Any) -> Variable:
    return MeanSquaredError()(x0, x1)


def softmax_cross_entropy(x: Any, t: Any) -> Variable:
    """`t`: integer class labels, one per row of the logits `x`."""
    return SoftmaxCrossEntropy()(x, t)
