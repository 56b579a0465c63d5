"""exp_mlp -- a real training loop: what graph ownership costs a small network.

The book's step 48: a two-layer MLP (2 -> hidden -> 3, sigmoid) learns the
spiral data set (300 points, 3 classes, generated) by plain SGD on shuffled
mini-batches. Each iteration builds one step's graph, runs backward and
updates the parameters in place; the loop's names (the batch, `h`, `y`,
`loss`, the parameters' Variables) stay bound until the next iteration
rebinds them, as in the book's loop.

    h = sigmoid(linear(x, W1, b1))     # a1 = x @ W1 + b1 is the graph's only unnamed array
    y = linear(h, W2, b2)
    loss = softmax_cross_entropy(y, t)
    backward(loss); W -= lr * grad     # for each parameter

The model (bytes of the dtype `a`, batch B, hidden H, D = 2 inputs, C = 3
classes, N = 300 points; int64 labels):

- always held: the data set (N*D*a + N*8), the parameters
  ((D*H + H + H*C + C)*a), the epoch's shuffled order (N*8), the batch
  (B*D*a + B*8);
- one step's graph: the activations a1, h (B*H*a each), y (B*C*a) and the
  0-d loss (a);
- its grads: every parameter's ((D*H + H + H*C + C)*a), the batch's
  (B*D*a: x enters the graph as a leaf), and the intermediates' (a1, h: B*H*a
  each, y: B*C*a, the loss: a).

weakref holds the data, one graph and all its grads at the end of an
iteration. retain_grad frees the intermediates' grads (a leaf's are kept).
strongref's graphs are cycles: with the GC off it holds every step's batch,
graph and grads (the parameters' arrays are shared, updated in place); with
the GC on that is the bound, and its memory saws: it climbs until a
collection frees the finished steps. no_grad only evaluates the network
(no graph, no backward, no training): it holds the data, h, y and the loss.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from harness.experiment import (
    DEFAULT_PROBES,
    DTYPE_PARAM,
    GC_PARAM,
    SEED_PARAM,
    Expectation,
    Expected,
    Experiment,
    Ordering,
    Param,
    Params,
    Ref,
    Workbench,
)
from harness.model import CYCLIC, GRAPH_OWNERSHIP, NO_GRAPH, REFCOUNTED

POINTS, INPUTS, CLASSES = 300, 2, 3  # the spiral data set
LABEL_BYTES = 8  # int64 class labels; the shuffled order is int64 too
OPS = frozenset({"linear", "sigmoid", "softmax_cross_entropy"})


def spiral(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The book's spiral data in the trial's dtype (the float32 original is dropped)."""
    from engine.datasets import get_spiral  # numpy only: the same data for every engine

    x, t = get_spiral(train=True)
    return x.astype(dtype), t


def batches_per_epoch(p: Params) -> int:
    return math.ceil(POINTS / p.batch)


def batch_sizes(p: Params) -> list[int]:
    """The size of every iteration's batch, in order (the last of an epoch may be smaller)."""
    per_epoch = [min(p.batch, POINTS - k * p.batch) for k in range(batches_per_epoch(p))]
    return per_epoch * p.epochs


def workload(bench: Workbench) -> None:
    eng, p = bench.engine, bench.params
    linear, sigmoid, loss_of = eng.op("linear"), eng.op("sigmoid"), eng.op("softmax_cross_entropy")
    training = getattr(eng, "can_backward", True)  # no_grad: the network is only evaluated
    x_all, t_all = spiral(p.dtype)
    scale = np.sqrt(np.asarray(1.0 / INPUTS, dtype=p.dtype))
    W1 = bench.random_array((INPUTS, p.hidden))
    W1 *= scale
    b1 = np.zeros(p.hidden, dtype=p.dtype)
    W2 = bench.random_array((p.hidden, CLASSES))
    W2 *= np.sqrt(np.asarray(1.0 / p.hidden, dtype=p.dtype))
    b2 = np.zeros(CLASSES, dtype=p.dtype)
    params = (W1, b1, W2, b2)
    # Each logit sums `hidden` terms, so a step moves it `hidden` times as far:
    # the rate is the book's for 10 hidden units and scaled down for wider ones.
    lr = p.lr * min(1.0, 10 / p.hidden)
    per_epoch = batches_per_epoch(p)
    for i in bench.iterations(p.epochs * per_epoch):
        if i % per_epoch == 0:
            order = bench.rng.permutation(POINTS)
        index = order[(i % per_epoch) * p.batch:(i % per_epoch + 1) * p.batch]
        x, t = x_all[index], t_all[index]
        # Fresh leaves over the parameters' arrays each step (no copy): their
        # grads are this step's, and the update below writes the arrays in place.
        leaves = [eng.variable(w) for w in params]
        with eng.configured():
            h = sigmoid(linear(x, leaves[0], leaves[1]))
            y = linear(h, leaves[2], leaves[3])
            loss = loss_of(y, t)
        if training:
            eng.backward(loss)
            for w, leaf in zip(params, leaves):
                w -= lr * eng.grad(leaf)
        bench.record(loss=float(loss.data), epoch=i // per_epoch)


def loss_by_epoch(records: list[dict]) -> dict[str, float | None]:
    """The mean loss of the first and of the last epoch: a training loop's loss must fall."""
    losses: dict[int, list[float]] = {}
    for row in records:
        if row.get("loss") is not None and row.get("epoch") is not None:
            losses.setdefault(int(row["epoch"]), []).append(float(row["loss"]))
    if not losses:
        return {"loss_first_epoch": None, "loss_last_epoch": None}
    first, last = losses[min(losses)], losses[max(losses)]
    return {"loss_first_epoch": sum(first) / len(first), "loss_last_epoch": sum(last) / len(last)}


def _a(p: Params) -> int:
    return np.dtype(p.dtype).itemsize


def data_bytes(p: Params) -> int:
    """The data set, the parameters and the epoch's shuffled order: held from start to end."""
    a, H = _a(p), p.hidden
    data_set = POINTS * INPUTS * a + POINTS * LABEL_BYTES
    parameters = (INPUTS * H + H + H * CLASSES + CLASSES) * a
    return data_set + parameters + POINTS * LABEL_BYTES  # and the epoch's shuffled order


def batch_bytes(p: Params, b: int) -> int:
    return b * INPUTS * _a(p) + b * LABEL_BYTES


def activation_bytes(p: Params, b: int) -> int:
    """a1, h, y and the 0-d loss."""
    return (2 * b * p.hidden + b * CLASSES + 1) * _a(p)


def leaf_grad_bytes(p: Params, b: int) -> int:
    """The parameters' grads and the batch's (x is a leaf of the graph)."""
    H = p.hidden
    return (INPUTS * H + H + H * CLASSES + CLASSES + b * INPUTS) * _a(p)


def step_bytes(p: Params, b: int, intermediate_grads: bool) -> int:
    """What one training step with a batch of `b` holds: the batch, its graph, its grads."""
    grads = leaf_grad_bytes(p, b) + (activation_bytes(p, b) if intermediate_grads else 0)
    return batch_bytes(p, b) + activation_bytes(p, b) + grads


def expected(variant: str, p: Params) -> Expected:
    sizes = batch_sizes(p)
    ownership = GRAPH_OWNERSHIP.get(variant)
    # No exact peak is claimed (an op's temporaries while the previous step is still
    # bound); for the memory guard, a ceiling: two whole steps and three more
    # activation-sized temporaries beyond what is held.
    ceiling = 2 * step_bytes(p, p.batch, True) + 3 * activation_bytes(p, p.batch)
    if ownership == CYCLIC:
        every_step = data_bytes(p) + sum(step_bytes(p, b, True) for b in sizes)
        return Expected(every_step, bound=p.gc == "on", guard_peak=every_step + ceiling)
    if ownership == REFCOUNTED:
        return Expected(data_bytes(p) + step_bytes(p, sizes[-1], intermediate_grads=variant == "weakref"),
                        guard_peak=data_bytes(p) + ceiling)
    if ownership == NO_GRAPH:  # evaluation: the batch, h, y and the loss; a1 died inside sigmoid
        b = sizes[-1]
        return Expected(data_bytes(p) + batch_bytes(p, b) + (b * p.hidden + b * CLASSES + 1) * _a(p),
                        guard_peak=data_bytes(p) + ceiling)
    return Expected(None)


def expectations(variant: str, p: Params) -> list[Expectation]:
    model = expected(variant, p)
    if model.numpy_bytes_final is None:
        return []
    ownership = GRAPH_OWNERSHIP[variant]
    checks = []
    if ownership != NO_GRAPH:
        checks.append(Expectation("a real training loop: the last epoch's mean loss is below the first's",
                                  "loss_last_epoch", "<", Ref("loss_first_epoch", Fraction(1))))
    if model.bound:
        checks.append(Expectation("strongref holds at most every step's batch, graph and grads",
                                  "numpy_bytes_final", "<=", model.numpy_bytes_final))
        return checks
    what = {
        CYCLIC: "strongref with the GC off holds every step's batch, graph and grads",
        REFCOUNTED: (f"{variant} holds the data and one step: its batch, graph and "
                     + ("every grad" if variant == "weakref" else "the leaves' grads")),
        NO_GRAPH: "no_grad holds the data and the evaluated batch's h, y and loss",
    }[ownership]
    return [*checks, Expectation(what, "numpy_bytes_final", "==", model.numpy_bytes_final)]


EXPERIMENT = Experiment(
    name="exp_mlp",
    title="Step 48: a two-layer MLP trained by SGD on the spiral data",
    seed_step="48",
    claim="in a real training loop weakref holds one step's graph and grads; strongref's steps are cycles "
    "that pile up between collections; retain_grad drops the intermediates' grads; no_grad evaluates "
    "with no graph",
    workload=workload,
    variants=("strongref", "weakref", "retain_grad", "no_grad"),
    params=(
        Param("epochs", int, 10, "passes over the 300 points (10 batches each by default)", minimum=1),
        Param("batch", int, 30, "points per mini-batch (300: the whole set)", minimum=1),
        Param("hidden", int, 10, "hidden units", minimum=1),
        Param("lr", float, 1.0, "SGD learning rate at 10 hidden units (x 10/hidden above)", minimum=0),
        GC_PARAM,
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    probes=(*DEFAULT_PROBES, "cycle_debt"),
    comparisons=(
        Ordering("strongref's steps pile up: its peak is above weakref's", "numpy_bytes_peak", ">",
                 {"variant": "strongref"}, {"variant": "weakref"}),
        Ordering("retain_grad frees the intermediates' grads: it holds less than weakref", "numpy_bytes_final",
                 "<", {"variant": "retain_grad"}, {"variant": "weakref"}),
        Ordering("evaluating holds less than training", "numpy_bytes_final", "<",
                 {"variant": "no_grad"}, {"variant": "retain_grad"}),
    ),
    ops=lambda p: OPS,
    recorded_figures=loss_by_epoch,
    doc=__doc__ or "",
)
