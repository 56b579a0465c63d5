"""micrograd's Value (tests/engines/micrograd_engine.py) under the DeZero names
the harness looks for, instead of an ENGINE of its own."""
from micrograd_engine import Value

Variable = Value


def square(x):
    return x * x
