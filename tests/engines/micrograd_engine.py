"""micrograd's Value as it is -- no DeZero names -- with an engine of its own
for the harness (`ENGINE`): variable(), square, backward, grad."""
import numpy as np


class Value:
    def __init__(self, data, _children=(), _op=""):
        self.data = data
        self.grad = None
        self._backward = lambda: None
        self._prev = set(_children)
        self._op = _op

    def __mul__(self, other):
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad = (0 if self.grad is None else self.grad) + other.data * out.grad
            other.grad = (0 if other.grad is None else other.grad) + self.data * out.grad
        out._backward = _backward
        return out

    def backward(self):
        topo, visited = [], set()

        def build(v):
            if v not in visited:
                visited.add(v)
                for child in v._prev:
                    build(child)
                topo.append(v)
        build(self)
        self.grad = np.ones_like(self.data)
        for v in reversed(topo):
            v._backward()


class MicrogradEngine:
    variable_type = Value

    def variable(self, array):
        return Value(array)

    def square(self, x):
        return x * x

    def mul(self, x0, x1):
        return x0 * x1

    def backward(self, y, retain_grad=False):
        y.backward()

    def grad(self, x):
        return x.grad


ENGINE = MicrogradEngine()
