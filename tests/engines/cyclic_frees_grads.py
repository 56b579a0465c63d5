"""No book step behaves so: graphs are cycles, yet backward frees intermediate grads."""
from engine import core as _core
from engine.core import Function, Variable, square  # noqa: F401

_core.Config.weak_outputs = False
_core.Config.free_intermediate_grads = True
