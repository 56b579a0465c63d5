"""Every op's gradient, and a few composite expressions, against central differences.

backward() seeds the output's grad with ones, so what it computes for a
non-scalar output is the gradient of sum(f(inputs)); the numerical helper
differentiates exactly that. float64 throughout, fixed seeds.
"""
from typing import Callable

import numpy as np
import pytest

from engine import Variable, add, div, exp, mul, neg, pow, square, sub

SHAPES = [(), (3,), (2, 3)]
EPS = 1e-6


def numerical_grad(f: Callable[..., Variable], *arrays: np.ndarray, eps: float = EPS) -> list[np.ndarray]:
    """Central differences of sum(f(*arrays).data) with respect to each array, element by element."""
    grads = []
    for i, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            shifted = [a.copy() for a in arrays]
            shifted[i][index] = array[index] + eps
            plus = np.sum(f(*(Variable(a) for a in shifted)).data)
            shifted[i][index] = array[index] - eps
            minus = np.sum(f(*(Variable(a) for a in shifted)).data)
            grad[index] = (plus - minus) / (2 * eps)
        grads.append(grad)
    return grads


def analytic_grad(f: Callable[..., Variable], *arrays: np.ndarray) -> list[np.ndarray]:
    inputs = [Variable(a.copy()) for a in arrays]
    y = f(*inputs)
    y.backward()
    return [x.grad for x in inputs]


def check(f: Callable[..., Variable], *arrays: np.ndarray, rtol: float = 1e-6, atol: float = 1e-7) -> None:
    # a generator asked for shape () returns a Python/numpy scalar: make it a 0-d array
    arrays = tuple(np.asarray(a) for a in arrays)
    for a in arrays:
        assert a.dtype == np.float64
    expected = numerical_grad(f, *arrays)
    actual = analytic_grad(f, *arrays)
    for x_array, got, want in zip(arrays, actual, expected):
        assert got is not None
        assert got.shape == x_array.shape
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_numerical_grad_helper_is_right_on_a_known_function():
    # sanity check of the checker itself: d/dx sum(x^3) = 3 x^2
    x = np.array([1.0, -2.0, 0.5])
    (grad,) = numerical_grad(lambda v: Variable(v.data**3), x)
    np.testing.assert_allclose(grad, 3 * x**2, rtol=1e-6)


def rng_for(shape, salt: int) -> np.random.Generator:
    return np.random.default_rng(1000 * salt + len(shape) * 10 + sum(shape))


def away_from_zero(rng: np.random.Generator, shape) -> np.ndarray:
    """Values in ±[0.5, 2]: safe denominators and pow bases."""
    return rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


UNARY = {
    "neg": neg,
    "square": square,
    "exp": exp,
    "pow 3": lambda x: pow(x, 3),
    "pow -2": lambda x: pow(x, -2),
    "operator -x": lambda x: -x,
    "operator x**2": lambda x: x**2,
}

BINARY = {
    "add": add,
    "mul": mul,
    "sub": sub,
    "div": div,
    "operator +": lambda a, b: a + b,
    "operator *": lambda a, b: a * b,
    "operator -": lambda a, b: a - b,
    "operator /": lambda a, b: a / b,
}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_op_gradient(name, shape):
    rng = rng_for(shape, list(UNARY).index(name))
    x = away_from_zero(rng, shape)
    check(UNARY[name], x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fractional_pow_gradient(shape):
    x = rng_for(shape, 50).uniform(0.5, 2.0, size=shape)  # positive base for x ** 1.5
    check(lambda v: pow(v, 1.5), x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_op_gradient(name, shape):
    rng = rng_for(shape, 100 + list(BINARY).index(name))
    check(BINARY[name], rng.standard_normal(shape), away_from_zero(rng, shape))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_binary_op_with_the_same_variable_twice(shape):
    x = rng_for(shape, 200).standard_normal(shape) + 3.0
    check(lambda v: v * v, x)
    check(lambda v: v + v, x)
    check(lambda v: v - v * 0.5, x)
    check(lambda v: v / (v * v), x)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reflected_operators_with_constants(shape):
    rng = rng_for(shape, 300)
    c = rng.standard_normal(shape)
    x = away_from_zero(rng, shape)
    check(lambda v: 2.5 - v, x)
    check(lambda v: 2.5 / v, x)
    check(lambda v: c * v + 1.0, x)
    check(lambda v: c / v - c, x)


def sphere(x, y):
    return x**2 + y**2


def matyas(x, y):
    return 0.26 * (x**2 + y**2) - 0.48 * x * y


def goldstein(x, y):
    return (1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2)) * (
        30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y + 27 * y**2)
    )


def diamond(x, y):
    a = exp(x * 0.5)
    return square(a) * y - a / (y * y + 1) + neg(a)


COMPOSITES = {"sphere": sphere, "matyas": matyas, "goldstein": goldstein, "diamond": diamond}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(COMPOSITES))
def test_composite_expression_gradient(name, shape):
    rng = rng_for(shape, 400 + list(COMPOSITES).index(name))
    x = rng.uniform(-1.0, 1.0, size=shape)
    y = rng.uniform(-1.0, 1.0, size=shape)
    # goldstein's values reach 1e5: compare relative to its scale
    check(COMPOSITES[name], x, y, rtol=1e-5, atol=1e-6)


def test_known_values_of_the_book_functions():
    # step 24 of the book: the gradients at (1, 1)
    x, y = Variable(np.array(1.0)), Variable(np.array(1.0))
    z = matyas(x, y)
    z.backward()
    assert (x.grad, y.grad) == pytest.approx((0.040000000000000036, 0.040000000000000036))
    x, y = Variable(np.array(1.0)), Variable(np.array(1.0))
    z = goldstein(x, y)
    z.backward()
    assert (float(x.grad), float(y.grad)) == (-5376.0, 8064.0)
