"""Every printed output of the seed notebooks (steps 7-20), reproduced by the engine.

Each test replays a seed cell with the engine's API and checks what the seed
printed, as the same text where the seed printed it.
"""
import numpy as np
import pytest

import engine
from engine import Config, Function, Variable, add, exp, mul, square
from engine.variants import get_variant


def printed(capsys, *values) -> str:
    print(*values)
    return capsys.readouterr().out.rstrip("\n")


# --- step 7: backpropagation automated ---------------------------------------


def test_step7_square_exp_square_grad_at_half():
    # seed 001 In[19]: y = C(B(A(x))) with A = C = Square, B = Exp, x = 0.5
    x = Variable(np.array(0.5))
    a = square(x)
    b = exp(a)
    y = square(b)
    y.grad = np.array(1.0)
    y.backward()
    assert x.grad == 3.297442541400256
    assert repr(float(x.grad)) == "3.297442541400256"


def test_step7_graph_links_creator_and_inputs():
    # seed 001 In[14]: walking the graph backwards from y reaches x
    x = Variable(np.array(0.5))
    a = square(x)
    b = exp(a)
    y = square(b)
    assert isinstance(y.creator, engine.Square)
    assert y.creator.inputs[0] is b
    assert isinstance(b.creator, engine.Exp)
    assert b.creator.inputs[0] is a
    assert a.creator.inputs[0] is x
    assert x.creator is None


# --- steps 11-14: variable-length arguments ------------------------------------


def test_step12_add_of_two_ints(capsys):
    # seed 003 In[25]: add(Variable(2), Variable(3)) prints 5
    y = add(Variable(np.array(2)), Variable(np.array(3)))
    assert printed(capsys, y.data) == "5"
    assert y.data.dtype.kind == "i"


def test_step13_sum_of_squares(capsys):
    # seed 003 In[31]: z = x^2 + y^2 at (2, 3)
    x = Variable(np.array(2.0))
    y = Variable(np.array(3.0))
    z = add(square(x), square(y))
    z.backward()
    assert printed(capsys, z.data) == "13.0"
    assert printed(capsys, x.grad) == "4.0"
    assert printed(capsys, y.grad) == "6.0"


def test_step14_same_variable_twice(capsys):
    # seed 004 In[11] / seed 003 In[34]: y = x + x, dy/dx = 2 (the seed's bug gave 1.0)
    x = Variable(np.array(3.0))
    y = add(x, x)
    assert printed(capsys, "y", y.data) == "y 6.0"
    y.backward()
    assert printed(capsys, "x.grad", x.grad) == "x.grad 2.0"


def test_step14_cleargrad_between_computations(capsys):
    # seed 003 In[41]: reuse x for a second computation after cleargrad()
    x = Variable(np.array(3.0))
    y = add(x, x)
    y.backward()
    assert x.grad == 2.0

    x.cleargrad()
    assert x.grad is None
    y = add(add(x, x), x)
    y.backward()
    assert printed(capsys, x.grad) == "3.0"


def test_step14_without_cleargrad_grads_accumulate():
    # why cleargrad exists: a second backward adds to the first (2 + 3)
    x = Variable(np.array(3.0))
    add(x, x).backward()
    add(add(x, x), x).backward()
    assert x.grad == 5.0


# --- step 16: generations -----------------------------------------------------


def test_step16_diamond(capsys):
    # seed 000 In[30]: a = x^2; y = a^2 + a^2 at x = 2
    x = Variable(np.array(2.0))
    a = square(x)
    y = add(square(a), square(a))
    y.backward()
    assert printed(capsys, y.data) == "32.0"
    assert printed(capsys, x.grad) == "64.0"


def test_step16_generation_of_variables_and_functions():
    x = Variable(np.array(2.0))
    a = square(x)
    b = square(a)
    y = add(b, a)  # generation = max of the inputs' generations
    assert (x.generation, a.generation, b.generation, y.generation) == (0, 1, 2, 3)
    assert (a.creator.generation, b.creator.generation, y.creator.generation) == (0, 1, 2)


class Recorded(Function):
    """Identity (one input) or sum (several inputs) that logs when its backward runs."""

    def __init__(self, log: list, label: str) -> None:
        self.log = log
        self.label = label

    def forward(self, *xs):
        return sum(xs[1:], xs[0].copy())

    def backward(self, gy):
        self.log.append(self)
        return gy if len(self.inputs) == 1 else tuple(gy for _ in self.inputs)


def test_step16_backward_pops_largest_generation_first():
    # seed 000 In[27-29]: functions with generations [2, 0, 1, 4, 2] are taken
    # largest first. Here the engine's own backward orders a DAG whose functions
    # are created with generations 2, 0, 1, 4, 2 (after the chain that makes
    # generation 4 reachable), and we record the order it calls them.
    log: list[Recorded] = []
    x = Variable(np.array(1.0))
    x.generation = 2  # a leaf created "late" (as a Function's output would be)
    w = Variable(np.array(1.0))  # generation 0

    f_2a = Recorded(log, "2a")
    p = f_2a(x)  # generation 2 function
    f_0 = Recorded(log, "0")
    q = f_0(w)  # generation 0
    f_1 = Recorded(log, "1")
    r = f_1(q)  # generation 1
    s = Recorded(log, "3")(p)  # generation 3, so that generation 4 exists
    f_4 = Recorded(log, "4")
    t = f_4(s)  # generation 4
    f_2b = Recorded(log, "2b")
    u = f_2b(r)  # generation 2
    y = Recorded(log, "top")(t, u)  # generation 5: the root

    assert [f.generation for f in (f_2a, f_0, f_1, f_4, f_2b)] == [2, 0, 1, 4, 2]
    y.backward()
    generations = [f.generation for f in log]
    assert generations == sorted(generations, reverse=True)
    assert generations == [5, 4, 3, 2, 2, 1, 0]
    assert x.grad == 1.0 and w.grad == 1.0


def test_backward_runs_a_function_only_after_all_consumers_of_its_outputs():
    # A DAG where a depth-first walk (the pre-step-16 engine) would run `a`'s
    # creator before the second path into `a` has delivered its grad.
    log: list[Recorded] = []
    x = Variable(np.array(2.0))
    a = Recorded(log, "a")(x)
    b = Recorded(log, "b")(a)
    c = Recorded(log, "c")(b)
    d = Recorded(log, "d")(a)
    y = Recorded(log, "y")(c, d)
    y.backward()

    position = {f.label: i for i, f in enumerate(log)}
    assert len(log) == 5  # every function exactly once
    for f in log:
        for x_in in f.inputs:
            if x_in.creator is not None:
                assert position[x_in.creator.label] > position[f.label]
    assert x.grad == 2.0  # two paths, each contributing 1


# --- steps 17-18: weak references, retain_grad --------------------------------


def test_step17_all_grads_kept_without_freeing(capsys):
    # seed 003 In[58]: before step 18.1 every variable keeps its grad
    with get_variant("weakref").load().configured():
        x0 = Variable(np.array(1.0))
        x1 = Variable(np.array(1.0))
        t = add(x0, x1)
        y = add(x0, t)
        y.backward()
    assert printed(capsys, y.grad, t.grad) == "1.0 1.0"
    assert printed(capsys, x0.grad, x1.grad) == "2.0 1.0"


def test_step18_intermediate_grads_freed_by_default(capsys):
    # seed 003 In[63]: step 18's default backward frees y.grad and t.grad
    assert Config.free_intermediate_grads is True
    x0 = Variable(np.array(1.0))
    x1 = Variable(np.array(1.0))
    t = add(x0, x1)
    y = add(x0, t)
    y.backward()
    assert printed(capsys, y.grad, t.grad) == "None None"
    assert printed(capsys, x0.grad, x1.grad) == "2.0 1.0"


def test_step18_retain_grad_true_keeps_them(capsys):
    x0 = Variable(np.array(1.0))
    x1 = Variable(np.array(1.0))
    t = add(x0, x1)
    y = add(x0, t)
    y.backward(retain_grad=True)
    assert printed(capsys, y.grad, t.grad) == "1.0 1.0"
    assert printed(capsys, x0.grad, x1.grad) == "2.0 1.0"


def test_step18_no_grad_records_no_graph():
    # seed 003 In[70]
    with engine.no_grad():
        x = Variable(np.array(2.0))
        y = square(x)
    assert y.data == 4.0
    assert y.creator is None and y.generation == 0
    with engine.using_config("enable_backprop", False):
        y = square(x)
    assert y.creator is None
    assert square(x).creator is not None  # back on outside the block


# --- step 19: a transparent box -------------------------------------------------


def test_step19_reprs(capsys):
    # seed 003 In[93]
    assert printed(capsys, Variable(np.array([1, 2, 3]))) == "variable([1 2 3])"
    assert printed(capsys, Variable(None)) == "variable(None)"
    assert printed(capsys, Variable(np.array([[1, 2, 3], [4, 5, 6]]))) == (
        "variable([[1 2 3]\n          [4 5 6]])"
    )
    assert repr(Variable(np.array([[1, 2, 3], [4, 5, 6]]))) == (
        "variable([[1 2 3]\n" + " " * 10 + "[4 5 6]])"
    )


def test_step19_name_shape_and_len(capsys):
    # seed 003 In[90] and In[91]
    x = Variable(np.array([[1, 2, 3], [4, 5, 6]]))
    x.name = "x"
    assert printed(capsys, x.name) == "x"
    assert printed(capsys, x.shape) == "(2, 3)"
    assert len(x) == 2
    assert Variable(np.array([1, 2, 3, 4]), name="v").name == "v"
    assert Variable(np.array(1.0)).name is None


@pytest.mark.parametrize(
    "array",
    [np.array(1.5), np.arange(3), np.ones((2, 3), dtype=np.float32), np.zeros((4, 1, 2), dtype=np.int8)],
    ids=["0-d", "(3,)", "(2,3) float32", "(4,1,2) int8"],
)
def test_step19_ndarray_properties_pass_through(array):
    x = Variable(array)
    assert x.shape == array.shape
    assert x.ndim == array.ndim
    assert x.size == array.size
    assert x.dtype == array.dtype
    if array.ndim:
        assert len(x) == len(array)
    else:
        with pytest.raises(TypeError):
            len(x)  # like len() of a 0-d ndarray


# --- step 20: operator overloading ----------------------------------------------


def test_step20_mul_and_add_functions(capsys):
    # seed 003 In[96]
    a = Variable(np.array(3.0))
    b = Variable(np.array(2.0))
    c = Variable(np.array(1.0))
    y = add(mul(a, b), c)
    y.backward()
    assert printed(capsys, y) == "variable(7.0)"
    assert printed(capsys, a.grad) == "2.0"
    assert printed(capsys, b.grad) == "3.0"


def test_step20_operators(capsys):
    # seed 003 In[98] and In[100]
    a = Variable(np.array(3.0))
    b = Variable(np.array(2.0))
    assert printed(capsys, a * b) == "variable(6.0)"

    c = Variable(np.array(1.0))
    y = a * b + c
    y.backward()
    assert printed(capsys, y) == "variable(7.0)"
    assert printed(capsys, a.grad) == "2.0"
    assert printed(capsys, b.grad) == "3.0"
    assert c.grad == 1.0
