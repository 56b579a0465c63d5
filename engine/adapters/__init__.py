"""Engines other than ours, behind the same `EngineAPI` (see `engine.interface`).

- `torch_engine`: PyTorch on the CPU, with autograd on or inside `torch.no_grad()`;
- `dezero_official`: the official DeZero 0.0.13, its `core_simple.py` loaded by file path;
- `plugin`: a user's own engine, a Python file or module with the DeZero names.

PyTorch and the official DeZero are optional extras (`pip install -e .[compare]`):
nothing here imports them until a trial of theirs loads its engine.
"""
