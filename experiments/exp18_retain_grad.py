"""exp18_retain_grad -- step 18.1: backward need not keep the grads of intermediate variables.

The workload builds a chain and backpropagates through it, `iterations`
times. Each iteration first drops the previous graph, so every iteration's
figures are its own; probes sample after the forward and after backward.

    op=square:  x -> square -> square -> square = y            (depth squares)
    op=add:     h = x1; h = add(x0, h) `depth` times; y = h     (seed 18.1's
                t = add(x0, x1); y = add(x0, t), made deeper)

The model counts array buffers, not references. N = size * itemsize.

square chain (depth d): the forward holds d + 1 arrays (x and each output).
Square.backward computes `2 * x * gy`: beside its product the temporary
`2 * x` is alive, t = N bytes -- or, for arrays of 256 KiB and more, which
numpy multiplies in the temporary's own buffer (temporary elision), just the
one-item array numpy makes of the scalar 2 (t = itemsize).
- weakref keeps every grad: after backward d + 1 data arrays and d + 1
  grads, 2(d + 1) N. The peak falls in the last Square.backward: the
  d + 1 data arrays, d grads, the product and t: (2d + 2) N + t.
- retain_grad frees the grads of each function's outputs as soon as that
  function's backward has run: after backward only the leaf's grad is left,
  (d + 2) N. The peak is data, one incoming grad, the product and t:
  (d + 3) N + t. With the workload's `retain_grad=true`, backward keeps every
  grad and the figures are weakref's.
- (np.ones_like(y), the seed of backward, also allocates a small scalar
  buffer for its fill; on a square chain it never decides the peak.)

add chain (depth d): the forward holds x0, x1 and d outputs, d + 2 arrays.
Add.backward returns the same array `gy` for both inputs, so the seed of the
backward, A = np.ones_like(y), is passed down the chain unchanged: every
intermediate grad *and* x1's grad are A itself, one buffer. Only x0, an
input of every add, accumulates: A, then A + A, then (A + A) + A, ..., each
sum a new buffer made while the previous sum is still bound to x0.grad.
- held after backward: data and A, plus x0's sum when d >= 2:
  (d + 3) N for d = 1, (d + 4) N for d >= 2;
- peak: (d + 4) N for d = 2, (d + 5) N for d >= 3 (the old sum and the new
  one side by side); for d = 1 the peak is the moment np.ones_like fills A,
  (d + 3) N plus its scalar buffer -- a few bytes this model does not claim
  exactly (an inequality checks it).
- The same for every variant: freeing the intermediate grads drops
  references to A, but x1.grad still holds it, so retain_grad saves nothing
  on an add chain.
"""
from __future__ import annotations

from typing import Any

from harness.experiment import (
    DTYPE_PARAM,
    Expectation,
    Expected,
    Experiment,
    GC_PARAM,
    Ordering,
    Param,
    Params,
    SEED_PARAM,
    Workbench,
)
from harness.model import array_bytes, scalar_times_array_transient

# Bytes np.ones_like may add to a peak it decides: its fill allocates a
# 0-d scalar buffer (16 bytes for float64, 12 for float32 on numpy 2).
ONES_LIKE_SLACK_BYTES = 64


def _build(bench: Workbench) -> tuple[list[Any], Any]:
    """The chain of this iteration: (its leaves, its output y)."""
    eng, p = bench.engine, bench.params
    if p.op == "square":
        x = eng.variable(bench.random_array(p.size))
        h = x
        for _ in range(p.depth):
            h = eng.square(h)
        return [x], h
    x0 = eng.variable(bench.random_array(p.size))
    x1 = eng.variable(bench.random_array(p.size))
    h = x1
    for _ in range(p.depth):
        h = eng.add(x0, h)
    return [x0, x1], h


def workload(bench: Workbench) -> None:
    eng, p = bench.engine, bench.params
    for _ in bench.iterations(p.iterations):
        # Drop the previous graph and its grads before building the next,
        # so the new forward does not stack on the old graph.
        leaves = y = None
        leaves, y = _build(bench)
        bench.sample("forward")
        eng.backward(y, retain_grad=p.retain_grad == "true")


def keeps_every_grad(variant: str, p: Params) -> bool:
    return variant == "weakref" or p.retain_grad == "true"


def arrays_held_and_peak(variant: str, p: Params) -> tuple[int, int | None]:
    """(arrays held after backward, arrays at the peak of backward not counting
    a square chain's transient); the peak is None where np.ones_like's scalar
    decides it (add chain of depth 1)."""
    d = p.depth
    if p.op == "square":
        if keeps_every_grad(variant, p):
            return 2 * (d + 1), 2 * d + 2
        return d + 2, d + 3
    data = d + 2
    if d == 1:
        return data + 1, None
    if d == 2:
        return data + 2, data + 2
    return data + 2, data + 3


def expected(variant: str, p: Params) -> Expected:
    if variant not in ("weakref", "retain_grad"):
        return Expected(None, None)
    n = array_bytes(p.size, p.dtype)
    held, peak = arrays_held_and_peak(variant, p)
    if peak is None:
        return Expected(held * n, None)
    transient = scalar_times_array_transient(p.size, p.dtype) if p.op == "square" else 0
    return Expected(held * n, peak * n + transient)


def expectations(variant: str, p: Params) -> list[Expectation]:
    model = expected(variant, p)
    if model.numpy_bytes_final is None:
        return []
    if p.op == "add":
        what = "Add passes one grad buffer down the chain; only x0 sums a new one"
    elif keeps_every_grad(variant, p):
        what = f"{variant} (retain_grad={p.retain_grad}) keeps every grad: data and grads of all d + 1 variables"
    else:
        what = "retain_grad frees each intermediate grad once used: data and the leaf's grad"
    checks = [Expectation(what, "numpy_bytes_final", "==", model.numpy_bytes_final)]
    if model.numpy_bytes_peak is not None:
        checks.append(Expectation(what, "numpy_bytes_peak", "==", model.numpy_bytes_peak))
    else:
        low = model.numpy_bytes_final
        checks.append(Expectation(
            "add chain of depth 1: the peak is np.ones_like's fill, a few bytes above what is held",
            "numpy_bytes_peak", "between", (low, low + ONES_LIKE_SLACK_BYTES),
        ))
    return checks


EXPERIMENT = Experiment(
    name="exp18_retain_grad",
    title="Step 18.1: backward frees intermediate grads unless retain_grad=True",
    seed_step="18.1",
    claim="a backward pass that keeps only the leaves' grads holds d + 2 arrays of a d-deep "
    "square chain instead of 2(d + 1); on an add chain, whose grads are one shared buffer, "
    "it saves nothing",
    workload=workload,
    variants=("weakref", "retain_grad"),
    params=(
        Param("iterations", int, 4, "graphs built and backpropagated", minimum=1),
        Param("size", int, 10_000, "elements per array", minimum=16),
        Param("depth", int, 3, "ops in the chain", minimum=1),
        Param("op", str, "square", "the chain's op", choices=("square", "add")),
        Param("retain_grad", str, "false", "backward(retain_grad=...)", choices=("false", "true")),
        GC_PARAM,
        SEED_PARAM,
        DTYPE_PARAM,
    ),
    expected=expected,
    expectations=expectations,
    ops=lambda p: frozenset({p.op}),
    probes=("tracemalloc", "rss", "gc", "census"),
    comparisons=(
        Ordering(
            "freeing intermediate grads holds fewer array bytes after backward on a square chain",
            "numpy_bytes_final", "<",
            left={"variant": "retain_grad", "op": "square", "retain_grad": "false"},
            right={"variant": "weakref"},
        ),
        Ordering(
            "... and its peak during backward is no higher (equal at depth 1, where y's grad is the only one freed)",
            "numpy_bytes_peak", "<=",
            left={"variant": "retain_grad", "op": "square", "retain_grad": "false"},
            right={"variant": "weakref"},
        ),
    ),
    doc=__doc__ or "",
)
