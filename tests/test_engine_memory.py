"""Memory semantics of each variant, exact to the byte.

numpy reports every data buffer it allocates to tracemalloc under its own
domain (`np.lib.tracemalloc_domain`), so the live array bytes are the sum of
a snapshot's traces in that domain. Only buffers allocated after
tracemalloc.start() are traced; every array these tests count is created
after it. The cyclic GC is disabled inside each test (and re-enabled after),
so that only reference counting frees anything unless the test calls
gc.collect() itself.

The workload is the seeds' step 17.5 loop body:
    x = Variable(np.random.randn(10000)); y = square(square(square(x)))
float64 x 10,000 elements = 80,000 bytes per array. The graph holds four
data arrays: x, a = x^2, b = a^2, y = b^2.
"""
import gc
import tracemalloc

import numpy as np
import pytest

from engine import Variable, no_grad, square
from engine.interface import BackwardUnavailable
from engine.variants import get_variant

N = 10_000
ARRAY = 8 * N  # bytes of one float64 array of N elements: 80,000
GRAPH_DATA = 4 * ARRAY  # x, a, b, y: 320,000


def numpy_bytes() -> int:
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)]
    )
    return sum(trace.size for trace in snapshot.traces)


@pytest.fixture
def rng():
    # made before tracing starts: a Generator keeps a small numpy array of its
    # seed entropy (16 bytes), which must not count as the workload's
    return np.random.default_rng(17)


@pytest.fixture
def traced(rng):
    """tracemalloc on and the cyclic GC off for the test; both restored after.

    Depends on `rng` so that the generator exists before tracing starts."""
    gc.collect()  # nothing of earlier tests left for a later collect to free
    was_enabled = gc.isenabled()
    was_tracing = tracemalloc.is_tracing()
    gc.disable()
    tracemalloc.start()
    try:
        assert numpy_bytes() == 0
        yield numpy_bytes
    finally:
        if not was_tracing:
            tracemalloc.stop()
        if was_enabled:
            gc.enable()


def forward(eng, rng):
    x = eng.variable(rng.standard_normal(N))
    y = eng.square(eng.square(eng.square(x)))
    return x, y


def test_numpy_domain_sees_exactly_the_array_buffers(traced):
    a = np.ones(N)
    assert traced() == ARRAY
    b = a * 2
    assert traced() == 2 * ARRAY
    del a, b
    assert traced() == 0


# --- holding the graph after the user drops it ------------------------------------


def test_strongref_graph_is_a_cycle_freed_only_by_the_gc(traced, rng):
    eng = get_variant("strongref").load()
    with eng.configured():
        x, y = forward(eng, rng)
        assert traced() == GRAPH_DATA
        del x, y
        # y <-> its creator (the Function holds y strongly): a reference cycle,
        # and every earlier variable hangs off it, so nothing is freed ...
        assert traced() == GRAPH_DATA
        # ... until the cyclic GC runs
        gc.collect()
        assert traced() == 0


def test_strongref_cycles_pile_up_across_iterations_without_gc(traced, rng):
    eng = get_variant("strongref").load()
    with eng.configured():
        for i in range(1, 4):
            x, y = forward(eng, rng)
            assert traced() == i * GRAPH_DATA
        del x, y
        assert traced() == 3 * GRAPH_DATA
        gc.collect()
        assert traced() == 0


@pytest.mark.parametrize("name", ["weakref", "retain_grad"])
def test_weak_outputs_graph_freed_by_refcount_at_once(traced, rng, name):
    eng = get_variant(name).load()
    with eng.configured():
        x, y = forward(eng, rng)
        assert traced() == GRAPH_DATA
        del x, y
        assert traced() == 0


@pytest.mark.parametrize("name", ["weakref", "retain_grad"])
def test_weak_outputs_hold_one_graph_flat_across_iterations(traced, rng, name):
    eng = get_variant(name).load()
    with eng.configured():
        for _ in range(3):
            # the new graph is built while the previous one is still bound to x, y
            x, y = forward(eng, rng)
            assert traced() == GRAPH_DATA


def test_dropping_only_y_frees_the_intermediates_but_not_x(traced, rng):
    eng = get_variant("weakref").load()
    with eng.configured():
        x, y = forward(eng, rng)
        del y  # frees y, then its creator, which held b, whose creator held a
        assert traced() == ARRAY


# --- after backward ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["strongref", "weakref"])
def test_backward_keeps_every_grad(traced, rng, name):
    eng = get_variant(name).load()
    with eng.configured():
        x, y = forward(eng, rng)
        eng.backward(y)
        # data: x, a, b, y                                    4 x 80,000
        # grads: y.grad (ones_like(y)), b.grad = 2*b*gy,
        #        a.grad = 2*a*gb, x.grad = 2*x*ga             4 x 80,000
        # Square.backward's temporary (2*x) and the heap and locals of
        # backward() are gone once it returns.
        assert traced() == 8 * ARRAY  # 640,000
        assert all(v.grad is not None for v in (x, y, y.creator.inputs[0]))


def test_backward_after_strongref_graph_dropped_still_needs_the_gc(traced, rng):
    eng = get_variant("strongref").load()
    with eng.configured():
        x, y = forward(eng, rng)
        eng.backward(y)
        del x, y
        assert traced() == 8 * ARRAY  # the grads hang off the same cycle
        gc.collect()
        assert traced() == 0


def test_retain_grad_variant_keeps_only_the_leaf_grad(traced, rng):
    eng = get_variant("retain_grad").load()
    with eng.configured():
        x, y = forward(eng, rng)
        eng.backward(y)
        # y.grad, b.grad and a.grad are each set to None right after the
        # function they feed has used them (y is an output of its creator, so
        # its seed grad goes too); x is nobody's output, so x.grad stays:
        # data 4 x 80,000 + x.grad 80,000
        assert traced() == GRAPH_DATA + ARRAY  # 400,000
        assert y.grad is None and y.creator.inputs[0].grad is None
        assert x.grad is not None


def test_retain_grad_variant_with_retain_grad_true_keeps_every_grad(traced, rng):
    eng = get_variant("retain_grad").load()
    with eng.configured():
        x, y = forward(eng, rng)
        eng.backward(y, retain_grad=True)
        assert traced() == 8 * ARRAY


@pytest.mark.parametrize("name", ["weakref", "retain_grad"])
def test_weak_outputs_free_graph_and_grads_when_dropped_after_backward(traced, rng, name):
    eng = get_variant(name).load()
    with eng.configured():
        x, y = forward(eng, rng)
        eng.backward(y)
        del x, y
        assert traced() == 0


# --- no_grad ------------------------------------------------------------------------------


def test_no_grad_variant_frees_intermediates_during_the_forward(traced, rng):
    eng = get_variant("no_grad").load()
    with eng.configured():
        x = eng.variable(rng.standard_normal(N))
        a = eng.square(x)
        assert traced() == 2 * ARRAY
        b = eng.square(a)
        del a  # nothing else holds a: no graph was recorded
        assert traced() == 2 * ARRAY
        del b
        y = eng.square(eng.square(eng.square(x)))
        # only x and y are held: a and b died as soon as the next op consumed them
        assert traced() == 2 * ARRAY  # 160,000
        with pytest.raises(BackwardUnavailable):
            eng.backward(y)
        del x, y
        assert traced() == 0


def test_no_grad_context_in_the_default_engine(traced, rng):
    x = Variable(rng.standard_normal(N))
    with no_grad():
        y = square(square(square(x)))
    assert traced() == 2 * ARRAY
    # the same forward with backprop on holds the whole graph
    y = square(square(square(x)))
    assert traced() == GRAPH_DATA
