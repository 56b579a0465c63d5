"""The engine's API contract: input checks, Config, backward on any graph,
operators, the seeds' bugs left behind, and the variants registry."""
import sys
import types

import numpy as np
import pytest

import engine
from engine import Config, Variable, add, mul, no_grad, square, using_config
from engine.interface import BackwardUnavailable, DezeroStyleEngine
from engine.variants import (
    UnknownVariantError,
    Variant,
    all_variants,
    get_variant,
    register,
    variant_names,
)

BUILT_IN = ["strongref", "weakref", "retain_grad", "no_grad"]


# --- Variable accepts an ndarray or None only --------------------------------


@pytest.mark.parametrize(
    "data, type_name",
    [(1.0, "float"), ([1, 2], "list"), (3, "int"), ((1.0,), "tuple"), (np.float64(1.0), "numpy.float64")],
)
def test_variable_rejects_non_ndarray_naming_the_type(data, type_name):
    with pytest.raises(TypeError, match=type_name):
        Variable(data)


def test_variable_accepts_ndarray_and_none():
    assert Variable(None).data is None
    array = np.arange(3.0)
    assert Variable(array).data is array  # held, not copied


def test_op_results_are_arrays_even_for_0d_inputs():
    # numpy returns np.float64 from ops on 0-d arrays; the engine wraps it back
    y = square(Variable(np.array(3.0)))
    assert type(y.data) is np.ndarray and y.data.shape == ()
    assert engine.as_array(np.float64(2.0)).shape == ()
    assert isinstance(engine.as_array(2.0), np.ndarray)


# --- backward ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_backward_on_a_leaf_seeds_ones(shape):
    x = Variable(np.full(shape, 7.0))
    x.backward()
    assert x.grad.shape == shape
    assert np.array_equal(x.grad, np.ones(shape))


def test_backward_seeds_ones_like_the_output_dtype():
    x = Variable(np.ones(3, dtype=np.float32))
    y = square(x)
    y.backward(retain_grad=True)
    assert y.grad.dtype == np.float32 and x.grad.dtype == np.float32


def test_backward_uses_a_grad_set_by_the_caller():
    x = Variable(np.array(3.0))
    y = square(x)
    y.grad = np.array(10.0)
    y.backward()
    assert x.grad == 60.0


def test_a_100000_op_chain_backpropagates_without_recursion():
    assert sys.getrecursionlimit() < 100_000
    x = Variable(np.array(1.0))
    y = x
    for _ in range(100_000):
        y = y + 0.0  # identity op: grad passes through unchanged
    assert y.generation == 100_000
    y.backward()
    assert x.grad == 1.0
    del y  # tearing the chain down must not recurse too deeply either


def test_backward_through_a_graph_made_under_no_grad_raises():
    x = Variable(np.array(2.0))
    with no_grad():
        y = square(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        y.backward()
    assert x.grad is None


def test_a_variable_made_under_no_grad_is_a_leaf_for_later_graphs():
    x = Variable(np.array(2.0))
    with no_grad():
        y = square(x)
    z = square(y)  # graph from y onwards
    z.backward()
    assert y.grad == 8.0  # dz/dy = 2y
    assert x.grad is None  # nothing was recorded between x and y


class Split(engine.Function):
    """Two outputs: the first element and the rest. An output that received no
    grad arrives in backward as None (treated as zeros here)."""

    def forward(self, x):
        return x[:1].copy(), x[1:].copy()

    def backward(self, g_head, g_tail):
        x = self.inputs[0].data
        g_head = np.zeros_like(x[:1]) if g_head is None else g_head
        g_tail = np.zeros_like(x[1:]) if g_tail is None else g_tail
        return np.concatenate([g_head, g_tail])


def test_function_with_several_outputs():
    x = Variable(np.array([5.0, 2.0]))
    head, tail = Split()(x)  # shapes (1,) and (1,): no broadcasting in the sum below
    assert head.creator is tail.creator and head.generation == tail.generation == 1
    y = add(square(head), mul(tail, 3.0))
    y.backward()
    assert np.array_equal(x.grad, [10.0, 3.0])


@pytest.mark.parametrize("drop_unused_output", [False, True])
def test_backward_from_one_output_while_the_other_is_unused_or_dropped(drop_unused_output):
    # With weak outputs a dropped output is a dead weakref by the time backward
    # runs; it passes no grad, like a live output that nobody used.
    x = Variable(np.array([1.0, 2.0, 3.0]))
    head, tail = Split()(x)
    if drop_unused_output:
        del tail
    head.backward()
    assert np.array_equal(x.grad, [1.0, 0.0, 0.0])


# --- Config, using_config, no_grad -------------------------------------------


def test_config_defaults_are_the_step18_engine():
    assert Config.enable_backprop is True
    assert Config.weak_outputs is True
    assert Config.free_intermediate_grads is True


def test_using_config_sets_and_restores():
    with using_config("enable_backprop", False):
        assert Config.enable_backprop is False
        with using_config("enable_backprop", True):
            assert Config.enable_backprop is True
        assert Config.enable_backprop is False
    assert Config.enable_backprop is True


def test_using_config_restores_when_the_block_raises():
    with pytest.raises(ZeroDivisionError):
        with using_config("weak_outputs", False):
            assert Config.weak_outputs is False
            1 / 0
    assert Config.weak_outputs is True


def test_no_grad_restores_when_the_block_raises():
    with pytest.raises(KeyError):
        with no_grad():
            assert Config.enable_backprop is False
            {}["missing"]
    assert Config.enable_backprop is True
    assert square(Variable(np.array(1.0))).creator is not None


def test_using_config_rejects_an_unknown_setting_naming_the_valid_ones():
    with pytest.raises(AttributeError, match="enable_backprop"):
        with using_config("enable_backprob", False):
            pass
    assert not hasattr(Config, "enable_backprob")


# --- the seeds' bugs are not reproduced -----------------------------------------


def test_grads_accumulate_instead_of_being_overwritten():
    # seed 004: `x.grad = gx` made add(x, x) give 1.0
    x = Variable(np.array(3.0))
    add(x, x).backward()
    assert x.grad == 2.0


def test_accumulation_never_writes_into_another_variables_grad():
    # Add.backward returns the same array gy for both inputs, so x0.grad first
    # *is* y.grad. Accumulating with `+=` would then write into y.grad (and t.grad,
    # the same array). The engine makes a new array (`x.grad + gx`), so with
    # retain_grad=True every grad stays what it should be.
    x0 = Variable(np.array(1.0))
    x1 = Variable(np.array(1.0))
    t = add(x0, x1)
    y = add(x0, t)
    y.backward(retain_grad=True)
    assert (float(y.grad), float(t.grad)) == (1.0, 1.0)
    assert (float(x0.grad), float(x1.grad)) == (2.0, 1.0)
    assert x0.grad is not y.grad


def test_same_variable_twice_leaves_the_output_grad_intact():
    x = Variable(np.array([1.0, 2.0]))
    y = add(x, x)
    y.backward(retain_grad=True)
    assert np.array_equal(y.grad, [1.0, 1.0])
    assert np.array_equal(x.grad, [2.0, 2.0])
    assert not np.shares_memory(x.grad, y.grad)


def test_a_second_backward_does_not_alter_the_first_backwards_arrays():
    x = Variable(np.array(3.0))
    y = add(x, x)
    y.backward(retain_grad=True)
    first_y_grad, first_x_grad = y.grad, x.grad
    y.backward(retain_grad=True)  # y.grad is kept (1.0): x gets 2.0 more
    assert x.grad == 4.0
    assert first_x_grad == 2.0 and first_y_grad == 1.0


def test_seed_step18_retain_grad_indentation_bug_not_reproduced():
    # seed 001's step 18.1 cleared grads inside the inputs loop and followed
    # creators only on the accumulation branch, so a chain stopped after one
    # function (x.grad stayed None).
    x = Variable(np.array(2.0))
    y = square(square(square(x)))  # x^8: dy/dx = 8 x^7 = 1024 at x = 2
    y.backward()
    assert x.grad == 1024.0


def test_function_generation_uses_its_inputs():
    # the seeds' `inpus` typo raised NameError at the first Function call
    a = square(square(Variable(np.array(1.0))))
    y = add(Variable(np.array(1.0)), a)
    assert y.creator.generation == 2 and y.generation == 3


# --- operators --------------------------------------------------------------------


def test_operators_between_variables():
    a = Variable(np.array(3.0))
    b = Variable(np.array(2.0))
    assert (a + b).data == 5.0
    assert (a - b).data == 1.0
    assert (a * b).data == 6.0
    assert (a / b).data == 1.5
    assert (a**2).data == 9.0
    assert (-a).data == -3.0


@pytest.mark.parametrize("other", [2.0, 2, np.array(2.0), np.float64(2.0)], ids=["float", "int", "ndarray", "np.float64"])
def test_operators_with_constants_on_either_side(other):
    x = Variable(np.array(3.0))
    cases = {
        "x + c": (lambda: x + other, 5.0, 1.0),
        "c + x": (lambda: other + x, 5.0, 1.0),
        "x - c": (lambda: x - other, 1.0, 1.0),
        "c - x": (lambda: other - x, -1.0, -1.0),
        "x * c": (lambda: x * other, 6.0, 2.0),
        "c * x": (lambda: other * x, 6.0, 2.0),
        "x / c": (lambda: x / other, 1.5, 0.5),
        "c / x": (lambda: other / x, 2.0 / 3.0, -2.0 / 9.0),
    }
    for label, (op, value, grad) in cases.items():
        x.cleargrad()
        y = op()
        assert isinstance(y, Variable), label
        assert y.data == pytest.approx(value), label
        y.backward()
        assert x.grad == pytest.approx(grad), label


def test_ndarray_times_variable_is_a_variable():
    # __array_priority__ makes numpy defer to Variable.__rmul__ instead of
    # broadcasting over the Variable as an object array
    x = Variable(np.array([1.0, 2.0]))
    c = np.array([3.0, 4.0])
    for y in (c * x, c + x, c - x, c / x):
        assert type(y) is Variable
        assert y.data.dtype == np.float64
    y = c * x
    assert np.array_equal(y.data, [3.0, 8.0])
    y.backward()
    assert np.array_equal(x.grad, c)


def test_pow_and_neg():
    x = Variable(np.array(2.0))
    y = x**3
    assert y.data == 8.0
    y.backward()
    assert x.grad == 12.0
    x.cleargrad()
    y = -x
    y.backward()
    assert y.data == -2.0 and x.grad == -1.0


def test_expression_mixing_everything():
    x = Variable(np.array(2.0))
    y = (3.0 - x) * (x**2) / 4 + (-x) - 1
    # y = (3x^2 - x^3)/4 - x - 1; dy/dx = (6x - 3x^2)/4 - 1 = -1 at x = 2
    assert y.data == pytest.approx(-2.0)
    y.backward()
    assert x.grad == pytest.approx(-1.0)


# --- variants --------------------------------------------------------------------


def test_the_four_built_in_variants_with_origin_and_description():
    assert variant_names()[:4] == BUILT_IN
    origins = {v.name: v.origin for v in all_variants()}
    assert origins["strongref"] == "step 16"
    assert origins["weakref"] == "step 17"
    assert origins["retain_grad"] == "step 18.1"
    assert origins["no_grad"] == "steps 18.3-18.5"
    for name in BUILT_IN:
        variant = get_variant(name)
        assert variant.name == name
        assert len(variant.description) > 20
        assert variant.available()
        api = variant.load()
        assert api.name == name
        assert api.variable_type is Variable and api.function_type is engine.Function
        assert api.numpy_visible is True
        assert api.can_backward is (name != "no_grad")


def test_unknown_variant_names_the_choices():
    with pytest.raises(UnknownVariantError) as info:
        get_variant("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in BUILT_IN:
        assert name in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "name, settings",
    [
        ("strongref", {"weak_outputs": False, "free_intermediate_grads": False, "enable_backprop": True}),
        ("weakref", {"weak_outputs": True, "free_intermediate_grads": False, "enable_backprop": True}),
        ("retain_grad", {"weak_outputs": True, "free_intermediate_grads": True, "enable_backprop": True}),
        ("no_grad", {"enable_backprop": False}),
    ],
)
def test_configured_applies_the_variant_and_restores_even_on_error(name, settings):
    api = get_variant(name).load()
    before = {key: getattr(Config, key) for key in settings}
    with pytest.raises(RuntimeError, match="inside"):
        with api.configured():
            assert {key: getattr(Config, key) for key in settings} == settings
            raise RuntimeError("inside")
    assert {key: getattr(Config, key) for key in settings} == before


def test_no_grad_variant_has_no_backward():
    api = get_variant("no_grad").load()
    with api.configured():
        x = api.variable(np.array(2.0))
        y = api.square(x)
        assert y.creator is None
        with pytest.raises(BackwardUnavailable, match="no_grad"):
            api.backward(y)
    assert issubclass(BackwardUnavailable, RuntimeError)


@pytest.mark.parametrize("name", ["strongref", "weakref", "retain_grad"])
def test_backward_capable_variants_agree_on_leaf_grads(name):
    api = get_variant(name).load()
    with api.configured():
        x = api.variable(np.array([0.5, -1.0]))
        w = api.variable(np.array([2.0, 3.0]))
        y = api.add(api.mul(api.square(x), w), api.neg(api.exp(api.sub(x, w))))
        api.backward(y)
    expected_x = 2 * x.data * w.data - np.exp(x.data - w.data)
    expected_w = x.data**2 + np.exp(x.data - w.data)
    assert np.allclose(api.grad(x), expected_x)
    assert np.allclose(api.grad(w), expected_w)
    intermediate = y.creator.inputs[0]
    if name == "retain_grad":
        assert intermediate.grad is None
    else:
        assert intermediate.grad is not None


def test_register_a_variant_of_ones_own(monkeypatch):
    import engine.variants as variants

    monkeypatch.setattr(variants, "_REGISTRY", dict(variants._REGISTRY))

    def load():
        return DezeroStyleEngine(engine, "mine", {"weak_outputs": False})

    register(Variant("mine", "my notebook", "step 16 with my tweak", load=load))
    assert variant_names()[-1] == "mine"
    assert get_variant("mine").load().settings == {"weak_outputs": False}


def test_adapter_drives_a_step17_module_without_retain_grad():
    # a user's notebook engine whose backward() takes no retain_grad and has no Config
    calls = []

    class NotebookVariable:
        def __init__(self, data):
            self.data, self.grad = data, None

        def backward(self):
            calls.append("backward")
            self.grad = np.ones_like(self.data)

    module = types.ModuleType("notebook")
    module.Variable = NotebookVariable
    module.square = lambda x: NotebookVariable(x.data**2)

    api = DezeroStyleEngine(module, "notebook")
    assert api.function_type is None
    with api.configured():
        y = api.square(api.variable(np.array(3.0)))
        api.backward(y, retain_grad=True)
    assert calls == ["backward"] and api.grad(y) == 1.0
    with pytest.raises(NotImplementedError, match="'exp'"):
        api.exp(y)
    with pytest.raises(AttributeError, match="Config"):
        with DezeroStyleEngine(module, "notebook", {"weak_outputs": False}).configured():
            pass
