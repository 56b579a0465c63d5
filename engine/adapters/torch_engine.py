"""PyTorch (CPU) behind `EngineAPI`.

Fairness choices, so that the same workload means the same thing as on ours:

- `variable(array)` is `torch.from_numpy(array).requires_grad_(True)`: the
  leaf shares the workload's numpy buffer, as our `Variable(array)` does. With
  `torch.tensor(array)` every leaf would be a copy, and the loop would hold (or
  briefly hold) one array more per iteration than ours for no reason of graph
  ownership.
- one intra-op thread (`torch.set_num_threads(1)`): our engine runs numpy on
  one core; torch's thread pool would add per-thread arenas to RSS.
- `backward(y)` seeds with a ones gradient of y's shape, as DeZero's
  `np.ones_like(self.data)` does.
- retain_grad: PyTorch keeps `.grad` only on leaves unless `Tensor.retain_grad()`
  was called before backward. That is DeZero's `backward(retain_grad=False)`.
  For `retain_grad=True` the adapter marks every live intermediate it made (it
  keeps weak references to the outputs of its ops) before running backward.

What the probes can see: torch allocates op outputs with its own CPU allocator,
which numpy never reports to tracemalloc, so `numpy_visible` is False and the
exact numpy-domain figures are "not available" (a partial figure -- the leaves,
which are numpy's -- would read as if torch's graphs were smaller). The graph
nodes and the tensors they save are C++ objects the cyclic GC never sees, and
the Python tensor objects it does see are only those user code still holds, so
the census reports "not available" rather than a count that would mean
something else than for a DeZero-style engine. RSS and USS carry the comparison.
"""
from __future__ import annotations

import importlib.util
import weakref
from typing import Any, Callable, ContextManager

import numpy as np

from engine.interface import BackwardUnavailable

INSTALL_HINT = "pip install torch==2.13.0 (every compared engine: pip install -e .[compare])"


# The ops `op(name)` offers, by DeZero's names and signatures (known without
# importing torch, so a plan can be checked in the run's own process).
OPS = ("square", "exp", "add", "mul", "sub", "neg", "div", "matmul", "sigmoid", "tanh", "relu",
       "reshape", "transpose", "sum", "sum_to", "broadcast_to", "linear", "mean_squared_error",
       "softmax_cross_entropy")


def _torch_functions(torch: Any) -> dict[str, Callable[..., Any]]:
    """DeZero's ops in torch. DeZero's `linear(x, W, b)` is `x @ W + b` with W
    of shape (in, out); its losses average over the batch, as torch's do."""
    def total(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis, keepdim=keepdims)

    return {
        "square": torch.square, "exp": torch.exp, "add": torch.add, "mul": torch.mul, "sub": torch.sub,
        "neg": torch.neg, "div": torch.div, "matmul": torch.matmul, "sigmoid": torch.sigmoid,
        "tanh": torch.tanh, "relu": torch.relu,
        "reshape": torch.reshape,
        "transpose": lambda x: x.T,
        "sum": total,
        "sum_to": lambda x, shape: x.sum_to_size(shape),
        "broadcast_to": torch.broadcast_to,
        "linear": lambda x, W, b=None: torch.matmul(x, W) if b is None else torch.addmm(b, x, W),
        "mean_squared_error": lambda x0, x1: torch.sum(torch.square(x0 - x1)) / len(x0),
        "softmax_cross_entropy": lambda x, t: torch.nn.functional.cross_entropy(x, t.long()),
    }


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


class TorchEngine:
    numpy_visible = False
    variable_type = None
    function_type = None

    def __init__(self, name: str, grad_enabled: bool = True) -> None:
        import torch

        torch.set_num_threads(1)
        self._torch = torch
        self.name = name
        self.grad_enabled = grad_enabled
        self.can_backward = grad_enabled
        self.version = torch.__version__
        # The ops' outputs, weakly: what backward(retain_grad=True) marks.
        self._outputs: weakref.WeakSet[Any] = weakref.WeakSet()
        self._functions = _torch_functions(torch)
        self.square, self.exp, self.add, self.mul, self.sub, self.neg = (
            self.op(name) for name in ("square", "exp", "add", "mul", "sub", "neg"))

    def _as_operand(self, value: Any) -> Any:
        return self._torch.from_numpy(value) if isinstance(value, np.ndarray) else value

    def _op(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def op(*args: Any) -> Any:
            out = function(*(self._as_operand(a) for a in args))
            if out.grad_fn is not None:
                self._outputs.add(out)
            return out

        op.__name__ = getattr(function, "__name__", "op")
        return op

    def op(self, name: str) -> Callable[..., Any]:
        """One of `OPS` by its DeZero name (`op("matmul")`)."""
        if name not in self._functions:
            raise NotImplementedError(f"engine {self.name!r} does not provide {name!r}")
        return self._op(self._functions[name])

    def variable(self, array: np.ndarray) -> Any:
        return self._torch.from_numpy(array).requires_grad_(True)

    def backward(self, y: Any, retain_grad: bool = False) -> None:
        if not self.can_backward:
            raise BackwardUnavailable(
                f"variant {self.name!r} runs inside torch.no_grad(): no graph, no backward pass"
            )
        if retain_grad:
            for tensor in list(self._outputs):
                tensor.retain_grad()
        y.backward(self._torch.ones_like(y))

    def grad(self, x: Any) -> np.ndarray | None:
        if not (x.is_leaf or x.retains_grad):  # reading .grad there only warns
            return None
        return None if x.grad is None else x.grad.numpy()

    def configured(self) -> ContextManager[None]:
        return self._torch.set_grad_enabled(self.grad_enabled)
