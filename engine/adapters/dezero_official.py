"""The official DeZero (`dezero==0.0.13` from PyPI) behind `EngineAPI`.

The package cannot be imported on numpy 2: `dezero/__init__.py` imports every
submodule, and `transforms.py` (and `datasets.py`) use `np.int`, which numpy
2 removed; `datasets.py` also imports matplotlib, which the package does not
declare. `dezero/core.py` cannot be loaded alone either: its first lines are
`import dezero`, which runs that same `__init__`, and its methods reach into
`dezero.functions` and `dezero.cuda`.

`dezero/core_simple.py` -- the book's steps 23-32 core: Config, weakref
outputs, `backward(retain_grad=False)` freeing intermediate grads, `no_grad`,
add/mul/neg/sub/div/pow -- imports only weakref, numpy and contextlib. So it
is loaded by file path (found with `importlib.util.find_spec`, which locates
the package without running its `__init__`), the installed files untouched.
Two things the package's `__init__` or other modules would do are done here:
`setup_variable()` installs the operators on Variable, and `square` and `exp`,
which live in `dezero/functions.py` (not loadable, see above), are added as
the book defines them for this core (steps 9-22), on the official `Function`.

The full `dezero/core.py` (steps 33-60: grads as Variables, `create_graph`,
`Parameter`, reshape/sum/matmul on Variable) is loaded too
(`load_core`): a bare `dezero` package object takes the place of the
failing `__init__` in `sys.modules` (its path set, its code not run), so
`import dezero` in core.py finds it; then the submodules core.py reaches
into -- `cuda`, `utils`, `functions` (and `functions_conv`, which it
imports) -- are imported into it as the package's `__init__` would, leaving
out `transforms` and `datasets`, the modules that fail. `square` is added
as above (the official package has none); `exp` is the package's own.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

INSTALL_HINT = "pip install dezero==0.0.13 (every compared engine: pip install -e .[compare])"
MODULE_NAME = "dezero_core_simple"


def core_simple_path() -> Path | None:
    """Where the installed `dezero/core_simple.py` is, without importing the package."""
    spec = importlib.util.find_spec("dezero")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "core_simple.py"
    return path if path.is_file() else None


def dezero_available() -> bool:
    return core_simple_path() is not None


@functools.cache
def load_core_simple() -> ModuleType:
    """The official `core_simple` module, operators installed, with the book's `square` and `exp`.

    One module per process, so every caller sees the same `Variable` class."""
    path = core_simple_path()
    if path is None:
        raise ModuleNotFoundError(f"the official DeZero is not installed; {INSTALL_HINT}")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.setup_variable()
    _add_book_functions(module)
    return module


def _add_book_functions(module: ModuleType) -> None:
    class Square(module.Function):
        def forward(self, x):
            return x**2

        def backward(self, gy):
            x = self.inputs[0].data
            return 2 * x * gy

    class Exp(module.Function):
        def forward(self, x):
            return np.exp(x)

        def backward(self, gy):
            x = self.inputs[0].data
            return np.exp(x) * gy

    module.Square, module.Exp = Square, Exp
    module.square = lambda x: Square()(x)
    module.exp = lambda x: Exp()(x)


@functools.cache
def load_core() -> ModuleType:
    """The official `dezero/core.py`, with the package's `functions` it needs,
    without the package's `__init__` (see the module docstring)."""
    import sys

    path = core_simple_path()
    if path is None:
        raise ModuleNotFoundError(f"the official DeZero is not installed; {INSTALL_HINT}")
    package = sys.modules.get("dezero")
    if package is None:
        package = ModuleType("dezero")
        package.__path__ = [str(path.parent)]
        package.__spec__ = importlib.util.spec_from_file_location("dezero", path.parent / "__init__.py",
                                                                  submodule_search_locations=[str(path.parent)])
        package.__version__ = "0.0.13"
        sys.modules["dezero"] = package
    core = importlib.import_module("dezero.core")
    for name in ("Variable", "Parameter", "Function", "using_config", "no_grad", "test_mode", "as_array",
                 "as_variable", "setup_variable", "Config"):
        setattr(package, name, getattr(core, name))
    for submodule in ("cuda", "utils", "functions"):
        setattr(package, submodule, importlib.import_module(f"dezero.{submodule}"))
    core.setup_variable()
    functions = package.functions

    class Square(core.Function):
        def forward(self, x):
            return x**2

        def backward(self, gy):
            x, = self.inputs
            return 2 * x * gy

    core.Square = Square
    core.square = lambda x: Square()(x)
    core.exp = functions.exp
    return core


def load_functions() -> ModuleType:
    """The official `dezero/functions.py` (matmul, linear, sigmoid, ...), as `load_core` imports it."""
    import sys

    load_core()
    return sys.modules["dezero.functions"]


# The ops each official module offers, read from its source (ast) rather than
# imported: a plan is checked in the run's own process -- a notebook's --
# which must not gain a stand-in `dezero` package in sys.modules for it.
BOOK_FUNCTIONS = frozenset({"square", "exp"})  # what load_core_simple / load_core add


def _functions_defined(path: Path) -> frozenset[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    # and what it re-exports from the package's other modules (functions.py: conv2d, pooling, ...)
    defined |= {alias.asname or alias.name for node in tree.body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dezero.")
                for alias in node.names}
    return frozenset(name for name in defined if name[:1].islower())  # functions, not the classes


def offered_ops(full_core: bool) -> frozenset[str]:
    """The public functions of core_simple.py (or of core.py and functions.py), and the book's two."""
    path = core_simple_path()
    if path is None:
        return frozenset()
    files = [path.parent / "core.py", path.parent / "functions.py"] if full_core else [path]
    return frozenset().union(*(_functions_defined(f) for f in files)) | BOOK_FUNCTIONS
