"""A DeZero-style define-by-run autodiff engine (steps 7-22 of
"Deep Learning from Scratch 3") whose graph-ownership choices are switchable.

By default it behaves like the book's step 18-22 engine: outputs held by
weak references, intermediate grads freed unless `backward(retain_grad=True)`,
backprop on. `engine.variants` names the configurations the harness compares.
"""
from engine.core import (
    Add,
    Config,
    Div,
    Exp,
    Function,
    Mul,
    Neg,
    Pow,
    Square,
    Sub,
    Variable,
    add,
    as_array,
    as_variable,
    div,
    exp,
    mul,
    neg,
    no_grad,
    pow,
    square,
    sub,
    using_config,
)

__all__ = [
    "Add", "Config", "Div", "Exp", "Function", "Mul", "Neg", "Pow", "Square", "Sub",
    "Variable", "add", "as_array", "as_variable", "div", "exp", "mul", "neg", "no_grad",
    "pow", "square", "sub", "using_config",
]
