"""The ops, layers, optimizer and data of a small network (steps 37-48).

Every op's gradient is checked against central differences on each
backprop-capable configuration of the engine, as in test_engine_gradients
(backward() seeds ones, so the numerical side differentiates sum(f(...))).
float64 throughout, fixed seeds. Then: no_grad records no graph, a tiny
MLP learns the spiral, and a network's graph is freed by reference counting
with weak outputs but only by the cyclic GC with strong ones.
"""
import contextlib
import gc
import weakref
from typing import Callable

import numpy as np
from test_engine_gradients import numerical_grad  # central differences, element by element
import pytest

import engine as E
from engine import Config, Variable, no_grad, using_config

EPS = 1e-6

# The backprop-capable variants of engine.variants, as Config settings.
SETTINGS = {
    "strongref": {"weak_outputs": False, "free_intermediate_grads": False},
    "weakref": {"weak_outputs": True, "free_intermediate_grads": False},
    "retain_grad": {"weak_outputs": True, "free_intermediate_grads": True},
}


@pytest.fixture(params=list(SETTINGS))
def setting(request):
    """Run the test under one configuration; Config restored after."""
    with contextlib.ExitStack() as stack:
        for name, value in SETTINGS[request.param].items():
            stack.enter_context(using_config(name, value))
        yield request.param


def check(f: Callable[..., Variable], *arrays: np.ndarray, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    """The grads backward gives every input of f agree with central differences."""
    arrays = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    expected = numerical_grad(f, *arrays)
    inputs = [Variable(a.copy()) for a in arrays]
    f(*inputs).backward()
    for x, want in zip(inputs, expected):
        assert x.grad is not None
        assert np.shape(x.grad) == x.shape
        assert x.grad.dtype == np.float64
        np.testing.assert_allclose(x.grad, want, rtol=rtol, atol=atol)


def normal(seed: int, *shapes) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def away_from_zero(seed: int, shape) -> np.ndarray:
    """Values in ±[0.5, 2]: safe denominators and no relu kink within EPS."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


# --- broadcasting in the binary ops ---------------------------------------------------

BROADCAST_SHAPES = [
    ((2, 3), (3,)),
    ((3,), (2, 3)),
    ((2, 3), (2, 1)),
    ((1, 3), (2, 1)),
    ((2, 3), ()),
    ((), (2, 3)),
    ((4, 1, 3), (2, 1)),
]

BINARY = {
    "add": E.add,
    "mul": E.mul,
    "sub": E.sub,
    "div": E.div,
    "operator +": lambda a, b: a + b,
    "operator /": lambda a, b: a / b,
}


@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_broadcasting_binary_op_gradient(setting, name, shapes):
    s0, s1 = shapes
    x0 = normal(len(name), s0)[0]
    x1 = away_from_zero(len(name) + 1, s1)
    check(BINARY[name], x0, x1)


def test_broadcast_grads_have_their_inputs_shapes():
    a, b = Variable(np.ones((2, 3))), Variable(np.array(2.0))
    y = a * b + b
    y.backward()
    assert a.grad.shape == (2, 3) and b.grad.shape == ()
    assert float(b.grad) == 6.0 + 6.0  # sum of a, plus one per element


def test_a_float_constant_gets_a_0d_grad():
    # the constant is wrapped in a Variable; its grad is now summed to its own shape
    x = Variable(np.ones(5))
    y = x * 2.0
    y.backward()
    constant = y.creator.inputs[1]
    assert constant.grad.shape == () and float(constant.grad) == 5.0


# --- tensor ops ----------------------------------------------------------------------

TENSOR_OPS = {
    "reshape (3, 2)": ((2, 3), lambda x: E.reshape(x, (3, 2))),
    "reshape (6,)": ((2, 3), lambda x: E.reshape(x, (6,))),
    "method reshape(3, 2)": ((2, 3), lambda x: x.reshape(3, 2)),
    "method reshape((1, 6))": ((2, 3), lambda x: x.reshape((1, 6))),
    "transpose": ((2, 3), E.transpose),
    ".T": ((2, 3), lambda x: x.T),
    "transpose (1, 0, 2)": ((2, 3, 4), lambda x: E.transpose(x, (1, 0, 2))),
    "method transpose(2, 0, 1)": ((2, 3, 4), lambda x: x.transpose(2, 0, 1)),
    "transpose (-1, 0, 1)": ((2, 3, 4), lambda x: E.transpose(x, (-1, 0, 1))),
    "sum": ((2, 3), E.sum),
    "sum keepdims": ((2, 3), lambda x: E.sum(x, keepdims=True)),
    "sum axis 0": ((2, 3), lambda x: E.sum(x, axis=0)),
    "sum axis 1 keepdims": ((2, 3), lambda x: E.sum(x, axis=1, keepdims=True)),
    "sum axis -1": ((2, 3, 4), lambda x: E.sum(x, axis=-1)),
    "sum axis (0, 2)": ((2, 3, 4), lambda x: x.sum(axis=(0, 2))),
    "sum axis (0, 2) keepdims": ((2, 3, 4), lambda x: x.sum((0, 2), True)),
    "sum of 0-d": ((), E.sum),
    "sum_to (3,)": ((2, 3), lambda x: E.sum_to(x, (3,))),
    "sum_to (1, 3)": ((2, 3), lambda x: E.sum_to(x, (1, 3))),
    "sum_to (2, 1)": ((2, 3), lambda x: E.sum_to(x, (2, 1))),
    "sum_to ()": ((2, 3), lambda x: E.sum_to(x, ())),
    "sum_to (2, 1) from 3-D": ((4, 2, 3), lambda x: E.sum_to(x, (2, 1))),
    "broadcast_to (2, 3) from (3,)": ((3,), lambda x: E.broadcast_to(x, (2, 3))),
    "broadcast_to (2, 3) from (2, 1)": ((2, 1), lambda x: E.broadcast_to(x, (2, 3))),
    "broadcast_to (2, 3) from ()": ((), lambda x: E.broadcast_to(x, (2, 3))),
}


@pytest.mark.parametrize("name", list(TENSOR_OPS))
def test_tensor_op_gradient(setting, name):
    shape, f = TENSOR_OPS[name]
    x = normal(list(TENSOR_OPS).index(name), shape)[0]
    # weighted, so that a grad in the wrong position is caught (sum(reshape(x)) has grad ones everywhere)
    weights = normal(99, f(Variable(x)).shape)[0]
    check(lambda v: f(v) * weights, x)


@pytest.mark.parametrize(
    "shapes", [((2, 3), (3, 4)), ((1, 3), (3, 1)), ((4, 1), (1, 2))], ids=str
)
def test_matmul_gradient(setting, shapes):
    x, W = normal(7, *shapes)
    check(E.matmul, x, W)
    check(lambda a, b: a @ b, x, W)


def test_same_shape_ops_are_no_ops():
    x = Variable(np.ones((2, 3)))
    assert E.reshape(x, (2, 3)) is x
    assert E.sum_to(x, (2, 3)) is x
    assert E.broadcast_to(x, (2, 3)) is x


# --- functions of a network ---------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no bias"])
def test_linear_gradient(setting, with_bias):
    x, W, b = normal(11, (5, 3), (3, 4), (4,))
    if with_bias:
        check(E.linear, x, W, b)
        check(E.linear, x, W, b.reshape(1, 4))  # a (1, out) bias broadcasts too
    else:
        check(E.linear, x, W)


def test_linear_computes_x_W_plus_b():
    x, W, b = normal(12, (5, 3), (3, 4), (4,))
    np.testing.assert_allclose(E.linear(x, W, b).data, x @ W + b)
    np.testing.assert_allclose(E.linear(x, W).data, x @ W)


ACTIVATIONS = {
    "sigmoid": (E.sigmoid, lambda a: 1 / (1 + np.exp(-a))),
    "tanh": (E.tanh, np.tanh),
    "relu": (E.relu, lambda a: np.maximum(a, 0)),
    "log": (lambda x: E.log(x * x), lambda a: np.log(a * a)),  # x*x: positive, and log's grad through mul
    "softmax": (E.softmax, lambda a: np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)),
    "softmax axis 0": (lambda x: E.softmax(x, axis=0), lambda a: np.exp(a) / np.exp(a).sum(axis=0, keepdims=True)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_values_and_gradient(setting, name):
    f, reference = ACTIVATIONS[name]
    x = away_from_zero(list(ACTIVATIONS).index(name), (3, 4))
    np.testing.assert_allclose(f(Variable(x)).data, reference(x), rtol=1e-12)
    weights = normal(98, (3, 4))[0]  # sum(softmax(x)) is constant: weight it
    check(lambda v: f(v) * weights, x)


def test_sigmoid_and_softmax_do_not_overflow():
    with np.errstate(over="raise"):
        assert np.array_equal(E.sigmoid(Variable(np.array([-1000.0, 1000.0]))).data, [0.0, 1.0])
        y = E.softmax(Variable(np.array([[1000.0, 0.0]])))
        np.testing.assert_allclose(y.data, [[1.0, 0.0]])


@pytest.mark.parametrize("shape", [(5, 1), (5,), (4, 3)], ids=str)
def test_mean_squared_error_gradient(setting, shape):
    x0, x1 = normal(13, shape, shape)
    check(E.mean_squared_error, x0, x1)
    assert float(E.mean_squared_error(x0, x1).data) == pytest.approx(((x0 - x1) ** 2).sum() / len(x0))


def test_softmax_cross_entropy_gradient_with_respect_to_logits(setting):
    (x,) = normal(14, (4, 3))
    t = np.array([2, 0, 1, 2])
    check(lambda v: E.softmax_cross_entropy(v, t), x)


def test_softmax_cross_entropy_value_and_stability():
    x = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    t = np.array([0, 1])
    p = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    expected = -np.log(p[np.arange(2), t]).mean()
    assert float(E.softmax_cross_entropy(x, t).data) == pytest.approx(expected, rel=1e-12)
    with np.errstate(over="raise"):
        big = Variable(np.array([[1000.0, 0.0, -1000.0]]))
        loss = E.softmax_cross_entropy(big, np.array([1]))
        loss.backward()
    assert float(loss.data) == pytest.approx(1000.0)
    np.testing.assert_allclose(big.grad, [[1.0, -1.0, 0.0]])


def test_a_two_layer_network_gradient(setting):
    """Every op of a training step, chained: linear, sigmoid, linear, softmax_cross_entropy."""
    x, W1, b1, W2, b2 = normal(15, (6, 2), (2, 5), (5,), (5, 3), (3,))
    t = np.array([0, 1, 2, 2, 1, 0])

    def net(x, W1, b1, W2, b2):
        return E.softmax_cross_entropy(E.linear(E.sigmoid(E.linear(x, W1, b1)), W2, b2), t)

    check(net, x, W1, b1, W2, b2)


def test_intermediate_grads_follow_the_setting(setting):
    x = Variable(np.ones((2, 3)))
    h = E.tanh(x.sum(axis=0))
    y = E.sum(h * 2.0)
    y.backward()
    freed = Config.free_intermediate_grads
    assert (h.grad is None) == freed and x.grad is not None


# --- no_grad ---------------------------------------------------------------------------

NO_GRAD_OPS = {
    "reshape": lambda x, W: E.reshape(x, (3, 2)),
    "transpose": lambda x, W: x.T,
    "sum": lambda x, W: x.sum(axis=1),
    "sum_to": lambda x, W: E.sum_to(x, (3,)),
    "broadcast_to": lambda x, W: E.broadcast_to(x, (4, 2, 3)),
    "matmul": lambda x, W: x @ W,
    "linear": lambda x, W: E.linear(x, W, np.zeros(4)),
    "sigmoid": lambda x, W: E.sigmoid(x),
    "tanh": lambda x, W: E.tanh(x),
    "relu": lambda x, W: E.relu(x),
    "log": lambda x, W: E.log(x * x),
    "softmax": lambda x, W: E.softmax(x),
    "add broadcast": lambda x, W: x + np.ones(3),
    "mean_squared_error": lambda x, W: E.mean_squared_error(x, np.zeros((2, 3))),
    "softmax_cross_entropy": lambda x, W: E.softmax_cross_entropy(x, np.array([0, 2])),
    "MLP": lambda x, W: E.MLP((5, 2), rng=np.random.default_rng(0))(x),
}


@pytest.mark.parametrize("name", list(NO_GRAD_OPS))
def test_no_grad_records_no_graph(name):
    x, W = normal(16, (2, 3), (3, 4))
    with no_grad():
        y = NO_GRAD_OPS[name](Variable(x), Variable(W))
    assert y.creator is None and y.computed_without_graph
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()


# --- Variable conveniences ---------------------------------------------------------


def test_variable_tensor_conveniences():
    x = Variable(np.arange(6.0).reshape(2, 3))
    assert (x.shape, x.ndim, x.size, len(x)) == ((2, 3), 2, 6, 2)
    assert x.reshape(3, 2).shape == x.reshape((3, 2)).shape == x.reshape([3, 2]).shape == (3, 2)
    assert x.T.shape == x.transpose().shape == x.transpose(None).shape == (3, 2)
    assert x.transpose(1, 0).shape == x.transpose((1, 0)).shape == (3, 2)
    assert float(x.sum().data) == 15.0
    assert x.sum(axis=0).shape == (3,) and x.sum(0, keepdims=True).shape == (1, 3)
    a = np.ones((4, 2))
    assert isinstance(a @ x, Variable) and (a @ x).shape == (4, 3)  # __rmatmul__ over ndarray's @
    assert isinstance(x @ np.ones((3, 4)), Variable)


# --- layers, optimizer, data -------------------------------------------------------


def test_linear_layer_creates_its_weights_on_the_first_call():
    layer = E.Linear(4, rng=np.random.default_rng(0))
    assert layer.W.data is None
    y = layer(np.ones((5, 3), dtype=np.float32))
    assert layer.W.shape == (3, 4) and layer.W.dtype == np.float32
    assert y.shape == (5, 4) and y.dtype == np.float32
    assert [p.name for p in layer.params()] == ["W", "b"]
    assert all(isinstance(p, E.Parameter) and isinstance(p, Variable) for p in layer.params())


def test_linear_layer_with_in_size_and_without_bias():
    layer = E.Linear(4, in_size=3, nobias=True, dtype=np.float64, rng=np.random.default_rng(0))
    assert layer.W.shape == (3, 4) and layer.b is None
    assert list(layer.params()) == [layer.W]
    x = np.ones((2, 3))
    np.testing.assert_allclose(layer(x).data, x @ layer.W.data)


def test_params_cleargrads_and_sgd():
    model = E.MLP((5, 3), rng=np.random.default_rng(0))
    x, t = E.get_spiral()
    loss = E.softmax_cross_entropy(model(x), t)
    params = list(model.params())
    assert len(params) == 4 and [p.shape for p in params] == [(2, 5), (5,), (5, 3), (3,)]
    loss.backward()
    before = [p.data.copy() for p in params]
    grads = [p.grad for p in params]
    optimizer = E.SGD(lr=0.1).setup(model)
    assert optimizer.target is model
    optimizer.update()
    for p, old, grad in zip(params, before, grads):
        np.testing.assert_allclose(p.data, old - 0.1 * grad, rtol=1e-6)
    model.cleargrads()
    assert all(p.grad is None for p in params)
    updated = [p.data.copy() for p in params]
    optimizer.update()  # a Parameter without a grad is left as it is
    assert all(np.array_equal(p.data, old) for p, old in zip(params, updated))


def test_get_spiral():
    x, t = E.get_spiral()
    assert x.shape == (300, 2) and x.dtype == np.float32
    assert t.shape == (300,) and t.dtype == np.int64
    assert sorted(np.unique(t, return_counts=True)[1]) == [100, 100, 100]
    assert np.all(np.hypot(x[:, 0], x[:, 1]) < 1.0)
    x2, t2 = E.get_spiral()
    assert np.array_equal(x, x2) and np.array_equal(t, t2)  # seeded
    x_test, _ = E.get_spiral(train=False)
    assert not np.array_equal(x, x_test)
    # the book's first point (seed 1984, 100 points a class)
    np.testing.assert_allclose(x[0], [-0.13981389, -0.00721657], rtol=1e-6)
    state = np.random.get_state()[1].copy()
    E.get_spiral()
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global RNG untouched


def test_a_small_mlp_learns_the_spiral():
    """The book's step 48 loop (hidden 10, sigmoid, SGD lr 1, batches of 30): 100 epochs, 1,000 iterations."""
    x, t = E.get_spiral()
    model = E.MLP((10, 3), rng=np.random.default_rng(0))
    optimizer = E.SGD(lr=1.0).setup(model)
    rng = np.random.default_rng(1)
    epoch_losses = []
    for _ in range(100):
        index = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), 30):
            batch = index[start:start + 30]
            loss = E.softmax_cross_entropy(model(x[batch]), t[batch])
            model.cleargrads()
            loss.backward()
            optimizer.update()
            total += float(loss.data) * len(batch)
        epoch_losses.append(total / len(x))
    assert epoch_losses[-1] < 0.5 * epoch_losses[0], epoch_losses


# --- memory: who frees a network's graph -------------------------------------------


def network_graph() -> tuple[weakref.ref, weakref.ref]:
    """Forward and backward through a small network; return weak references
    to an intermediate Variable and to a Function of its graph, and nothing else."""
    model = E.MLP((10, 3), rng=np.random.default_rng(0))
    x, t = E.get_spiral()
    hidden = E.sigmoid(model.l0(x))
    loss = E.softmax_cross_entropy(model.l1(hidden), t)
    loss.backward()
    return weakref.ref(hidden), weakref.ref(hidden.creator)


@pytest.fixture
def no_cyclic_gc():
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("name", ["weakref", "retain_grad"])
def test_weak_outputs_free_a_network_graph_by_refcount(no_cyclic_gc, name):
    with contextlib.ExitStack() as stack:
        for setting, value in SETTINGS[name].items():
            stack.enter_context(using_config(setting, value))
        hidden, function = network_graph()
    assert hidden() is None and function() is None


def test_strong_outputs_keep_a_network_graph_until_gc(no_cyclic_gc):
    with contextlib.ExitStack() as stack:
        for setting, value in SETTINGS["strongref"].items():
            stack.enter_context(using_config(setting, value))
        hidden, function = network_graph()
    assert hidden() is not None and function() is not None  # a Function <-> output cycle
    gc.collect()
    assert hidden() is None and function() is None
