"""Optimizers (step 46): update a Layer's Parameters from their grads."""
from __future__ import annotations

from engine.core import Parameter
from engine.layers import Layer


class Optimizer:
    """`setup(target)` once, then `update()` after each backward.
    A Parameter without a grad (unused by the loss) is left as it is."""

    def __init__(self) -> None:
        self.target: Layer | None = None

    def setup(self, target: Layer) -> "Optimizer":
        self.target = target
        return self

    def update(self) -> None:
        for param in self.target.params():
            if param.grad is not None:
                self.update_one(param)

    def update_one(self, param: Parameter) -> None:
        raise NotImplementedError()


class SGD(Optimizer):
    """Plain gradient descent: W <- W - lr * grad."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.lr = lr

    def update_one(self, param: Parameter) -> None:
        param.data -= self.lr * param.grad  # in place: the update allocates no new parameter array
