"""A DeZero-style define-by-run autodiff engine ("Deep Learning from Scratch 3",
steps 7-22, plus the tensor ops, layers and optimizer of steps 37-48) whose
graph-ownership choices are switchable.

By default it behaves like the book's step 18-22 engine: outputs held by
weak references, intermediate grads freed unless `backward(retain_grad=True)`,
backprop on. `engine.variants` names the configurations the harness compares.
"""
from engine.core import (
    Add,
    BroadcastTo,
    Config,
    Div,
    Exp,
    Function,
    MatMul,
    Mul,
    Neg,
    Parameter,
    Pow,
    Reshape,
    Square,
    Sub,
    Sum,
    SumTo,
    Transpose,
    Variable,
    add,
    as_array,
    as_variable,
    broadcast_to,
    div,
    exp,
    matmul,
    mul,
    neg,
    no_grad,
    pow,
    reshape,
    square,
    sub,
    sum,
    sum_to,
    transpose,
    using_config,
)
from engine.datasets import get_spiral
from engine.functions import (
    LinearFunction,
    Log,
    MeanSquaredError,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
    linear,
    log,
    mean_squared_error,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    tanh,
)
from engine.layers import MLP, Layer, Linear
from engine.optimizers import SGD, Optimizer

__all__ = [
    "Add", "Config", "Div", "Exp", "Function", "Mul", "Neg", "Pow", "Square", "Sub",
    "Variable", "add", "as_array", "as_variable", "div", "exp", "mul", "neg", "no_grad",
    "pow", "square", "sub", "using_config",
    # tensor ops (steps 37-41)
    "BroadcastTo", "MatMul", "Reshape", "Sum", "SumTo", "Transpose",
    "broadcast_to", "matmul", "reshape", "sum", "sum_to", "transpose",
    # functions of a network (steps 42-48)
    "LinearFunction", "Log", "MeanSquaredError", "ReLU", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "Tanh", "linear", "log", "mean_squared_error", "relu",
    "sigmoid", "softmax", "softmax_cross_entropy", "tanh",
    # layers, optimizers, data (steps 44-48)
    "Parameter", "Layer", "Linear", "MLP", "Optimizer", "SGD", "get_spiral",
]
