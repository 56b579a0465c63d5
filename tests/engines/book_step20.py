"""Step 20-style: add and mul (and no square), on this project's Variable and Function."""
from engine.core import Variable, Function, Config  # noqa: F401
from engine import core as _c

def add(x0, x1):
    return _c.add(x0, x1)

def mul(x0, x1):
    return _c.mul(x0, x1)
