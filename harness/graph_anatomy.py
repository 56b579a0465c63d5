"""What an engine does with a graph, found by building small ones: run in a
fresh process (`python -m harness.graph_anatomy VARIANT` prints JSON), so
nothing the engine does touches the caller.

Everything is observed, not assumed from the engine's name:

- graph recorded: the output has a creator (`creator`, `grad_fn`, `_prev`)
  or keeps the intermediates alive while it lives;
- ownership: with the collector off, is the output gone as soon as the last
  user reference drops (reference counting), or only after `gc.collect()`
  (reference cycles)?
- grads: after `backward`, do intermediates still have one; with
  `retain_grad=True`?
- the cycle: with `gc.DEBUG_SAVEALL`, the objects a collection would free
  are kept in `gc.garbage`; among them, the engine's nodes (its Variable and
  Function types) are linked by *paths*: attribute names, indices, closure
  variables (`Square.outputs[0]`, `Value._backward.<closure out>`). A cycle is
  a strongly connected group of nodes over strong paths; the path that
  closes it is the one from a Function back to its output (or, in an engine
  without Functions, the self-reference), and the fix follows from how that
  path holds its target.
- the graph of one depth-3 chain, with each array's bytes, for the picture.
"""
from __future__ import annotations

import gc
import inspect
import json
import sys
import types
import weakref
from typing import Any, Iterator

import numpy as np

DEPTH = 3
SIZE = 1_000  # elements per array of the explained graph (8,000 bytes each in float64)
COUNT_DEPTH = 30  # ops built to count the containers each op costs the collector
_CREATOR_NAMES = ("creator", "grad_fn", "_prev", "_ctx", "_op_node")
# Attributes of objects without a __dict__ entry for them (C types such as torch's).
_KNOWN_ATTRIBUTES = ("creator", "grad_fn", "next_functions", "variable", "inputs", "outputs", "_prev")
_MAX_PATH = 6


def _op(engine: Any) -> tuple[str, Any]:
    """One unary op the engine has: square, else x*x, else x+x."""
    for name, make in (("square", lambda f: f), ("mul", lambda f: lambda x: f(x, x)),
                       ("add", lambda f: lambda x: f(x, x))):
        op = getattr(engine, name, None)
        if op is not None and getattr(op, "__name__", "") != "op_not_provided":
            return name, make(op)
    raise SystemExit("the engine has none of square, mul, add: nothing to build a graph with")


def _chain(engine: Any, op: Any, depth: int, size: int = SIZE) -> tuple[Any, list[Any]]:
    """x and its chain of `depth` ops; returns x and the outputs in order."""
    with engine.configured():
        x = engine.variable(np.ones(size))
        outputs = []
        y = x
        for _ in range(depth):
            y = op(y)
            outputs.append(y)
    return x, outputs


def _records_graph(y: Any) -> bool | None:
    for name in _CREATOR_NAMES:
        if hasattr(y, name):
            value = getattr(y, name)
            return bool(value) if isinstance(value, (set, tuple, list, frozenset)) else value is not None
    return None


def _weak(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:
        return None


def ownership(engine: Any, op: Any) -> dict[str, Any]:
    gc.disable()
    try:
        gc.collect()
        x, outputs = _chain(engine, op, DEPTH)
        y = outputs[-1]
        recorded = _records_graph(y)
        refs = [_weak(o) for o in outputs[:-1]]
        y_ref = _weak(y)
        del outputs
        if recorded is None and all(refs):
            recorded = any(r() is not None for r in refs)  # the graph is what keeps them
        if not recorded:
            kind = "none"
        else:
            del y
            if y_ref is None:
                kind = "unknown"
            elif y_ref() is None:
                kind = "refcount"
            else:
                gc.collect()
                kind = "cycles" if y_ref() is None else "leaked"
        del x
    finally:
        gc.enable()
    return {"graph_recorded": bool(recorded), "ownership": kind}


def grads(engine: Any, op: Any) -> dict[str, Any]:
    if not getattr(engine, "can_backward", True):
        return {"backward": False, "intermediate_grads": None, "retain_grad": None}
    found: dict[str, Any] = {"backward": True}
    for retain in (False, True):
        x, outputs = _chain(engine, op, DEPTH)
        with engine.configured():  # the variant's settings decide what backward keeps
            engine.backward(outputs[-1], retain_grad=retain)
            kept = sum(engine.grad(o) is not None for o in outputs[:-1])
        if not retain:
            found["intermediate_grads"] = "kept" if kept else "freed"
        elif found["intermediate_grads"] == "kept":
            found["retain_grad"] = "no effect (every grad is kept)"
        else:
            found["retain_grad"] = "honoured" if kept == DEPTH - 1 else "ignored"
        del x, outputs
    return found


def no_grad_mode(engine: Any) -> list[str]:
    """The switches that turn graph recording off, as the engine names them."""
    module = getattr(engine, "module", None)
    found = []
    config = getattr(module, "Config", None)
    if config is not None and hasattr(config, "enable_backprop"):
        found.append("Config.enable_backprop")
    for name in ("no_grad", "using_config"):
        if callable(getattr(module, name, None)):
            found.append(f"{name}()")
    if getattr(engine, "_torch", None) is not None:
        found.append("torch.no_grad()")
    return found


def containers_per_op(engine: Any, op: Any) -> float:
    """How much gen-0's count grows per op while a chain is built: what each op costs the collector."""
    gc.disable()
    try:
        gc.collect()
        before = gc.get_count()[0]
        x, outputs = _chain(engine, op, COUNT_DEPTH, size=1)
        grown = gc.get_count()[0] - before
        del x, outputs
        gc.collect()
    finally:
        gc.enable()
    return grown / COUNT_DEPTH


# --- the engine's objects as a graph of nodes and named paths ----------------------------

def node_types(engine: Any, sample: Any) -> tuple[type, ...]:
    types_ = [t for t in (getattr(engine, "variable_type", None), getattr(engine, "function_type", None)) if t]
    torch = getattr(engine, "_torch", None)
    if torch is not None:
        types_ += [torch.Tensor, torch.autograd.graph.Node]
    if not types_:
        types_.append(type(sample))
    return tuple(types_)


def _children(obj: Any) -> Iterator[tuple[str, Any, bool]]:
    """(label, child, weak) for what `obj` refers to, named as Python code would."""
    if isinstance(obj, (str, bytes, int, float, complex, bool, type, types.ModuleType, np.ndarray, np.generic)):
        return
    if isinstance(obj, weakref.ref):
        target = obj()
        if target is not None:
            yield "()", target, True
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield f"[{i}]", item, False
        return
    if isinstance(obj, dict):
        for key, item in obj.items():
            yield f"[{key!r}]", item, False
        return
    if isinstance(obj, (set, frozenset)):
        for item in obj:
            yield "{...}", item, False
        return
    if isinstance(obj, types.MethodType):
        yield ".__self__", obj.__self__, False
        return
    if isinstance(obj, types.FunctionType):
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            try:
                yield f".<closure {name}>", cell.cell_contents, False
            except ValueError:  # an empty cell
                continue
        return
    seen = set()
    for name, item in (getattr(obj, "__dict__", None) or {}).items():
        seen.add(name)
        yield f".{name}", item, False
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()) if not isinstance(getattr(cls, "__slots__", ()), str) else ():
            if name not in seen and name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                seen.add(name)
                yield f".{name}", getattr(obj, name), False
    for name in _KNOWN_ATTRIBUTES:
        if name not in seen:
            try:
                item = getattr(obj, name)
            except Exception:  # noqa: BLE001 - a property that raises is no reference
                continue
            if item is not None and not inspect.ismethod(item) and not inspect.isbuiltin(item):
                seen.add(name)
                yield f".{name}", item, False


def _paths(start: Any, is_node: Any, within: set[int] | None) -> Iterator[tuple[str, Any, bool]]:
    """(path, node, weak) for each engine node reached from `start` through non-node objects."""
    stack = [(start, "", False, 0)]
    visited = {id(start)}
    while stack:
        obj, path, weak, depth = stack.pop()
        for label, child, child_weak in _children(obj):
            if id(child) in visited:
                if is_node(child) and child is start:
                    yield path + label, child, weak or child_weak
                continue
            if is_node(child):
                if within is None or id(child) in within:
                    yield path + label, child, weak or child_weak
                continue
            if depth < _MAX_PATH and (within is None or id(child) in within or not gc.is_tracked(child)):
                visited.add(id(child))
                stack.append((child, path + label, weak or child_weak, depth + 1))


def _name(obj: Any) -> str:
    return type(obj).__name__


def _nbytes(obj: Any) -> int | None:
    data = getattr(obj, "data", None)
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    if hasattr(obj, "untyped_storage"):  # a torch tensor
        try:
            return int(obj.untyped_storage().nbytes())
        except Exception:  # noqa: BLE001 - a tensor without storage (meta, sparse) has no bytes to show
            return None
    return None


def graph_of(roots: list[Any], is_node: Any, within: set[int] | None = None) -> dict[str, Any]:
    """Nodes reachable from `roots` and the paths between them."""
    index: dict[int, int] = {}
    nodes: list[dict[str, Any]] = []
    objects: list[Any] = []
    edges: list[dict[str, Any]] = []
    queue = list(roots)
    for root in roots:
        index.setdefault(id(root), len(index))
        objects.append(root)
    while queue:
        obj = queue.pop(0)
        for path, node, weak in _paths(obj, is_node, within):
            if id(node) not in index:
                index[id(node)] = len(index)
                objects.append(node)
                queue.append(node)
            edges.append({"source": index[id(obj)], "target": index[id(node)], "path": path, "weak": weak})
    for n, obj in enumerate(objects):
        nodes.append({"id": n, "type": _name(obj), "bytes": _nbytes(obj)})
    return {"nodes": nodes, "edges": edges}


def strongly_connected(graph: dict[str, Any]) -> list[list[int]]:
    """Groups of nodes that reach each other over strong paths (Tarjan): the cycles."""
    successors: dict[int, list[int]] = {n["id"]: [] for n in graph["nodes"]}
    for edge in graph["edges"]:
        if not edge["weak"]:
            successors[edge["source"]].append(edge["target"])
    order, low, on_stack, stack, groups = {}, {}, set(), [], []
    counter = [0]

    def visit(v: int) -> None:
        order[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in successors[v]:
            if w not in order:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], order[w])
        if low[v] == order[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in successors[v]:
                groups.append(sorted(group))

    for v in successors:
        if v not in order:
            visit(v)
    return groups


def closing_edges(graph: dict[str, Any], group: list[int], variable_type_name: str | None) -> list[dict[str, Any]]:
    """The paths that close a cycle: from a non-Variable node (a Function) to a
    Variable -- the forward reference to an output -- or a node's path to itself."""
    members = set(group)
    types_ = {n["id"]: n["type"] for n in graph["nodes"]}
    inside = [e for e in graph["edges"] if not e["weak"] and e["source"] in members and e["target"] in members]
    closing = [e for e in inside if e["source"] == e["target"]]
    if not closing and variable_type_name:
        closing = [e for e in inside if types_[e["target"]] == variable_type_name
                   and types_[e["source"]] != variable_type_name]
    return closing or inside[:1]


def fix_for(edge: dict[str, Any], source_type: str) -> str:
    path = edge["path"]
    if ".<closure " in path:
        attribute = path.split(".<closure ")[0]
        name = path.split(".<closure ")[1].split(">")[0]
        return (f"the function in {source_type}{attribute} captures its own node as `{name}`: have it take the "
                f"node as an argument, or capture `weakref.ref({name})` and dereference it when called")
    attribute = path.split("[")[0].split("(")[0].lstrip(".")
    return (f"hold {source_type}.{attribute} through weakref.ref (step 17: "
            f"self.{attribute} = [weakref.ref(output) for output in outputs], and call output() in backward)")


def cycles(engine: Any, op: Any) -> dict[str, Any]:
    """Build one chain with the collector off, drop it, and let a collection
    that saves what it finds (DEBUG_SAVEALL) show what held it."""
    x, outputs = _chain(engine, op, DEPTH)
    is_node_types = node_types(engine, outputs[-1])

    def is_node(obj: Any) -> bool:
        return isinstance(obj, is_node_types)

    variable_type = getattr(engine, "variable_type", None)
    variable_name = variable_type.__name__ if variable_type else type(outputs[-1]).__name__
    picture = graph_of([outputs[-1]], is_node)
    del x, outputs
    gc.disable()
    gc.collect()  # the picture's chain, if it was a cycle, and whatever else is pending
    x, outputs = _chain(engine, op, DEPTH)  # a fresh chain, its collection the only one counted
    del x, outputs
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    within = {id(o) for o in garbage}
    nodes_in_garbage = [o for o in garbage if is_node(o)]
    found: list[dict[str, Any]] = []
    if nodes_in_garbage:
        held = graph_of(nodes_in_garbage, is_node, within)
        types_ = {n["id"]: n["type"] for n in held["nodes"]}
        by_shape: dict[tuple[str, ...], dict[str, Any]] = {}
        for group in strongly_connected(held):
            members = set(group)
            closing = closing_edges(held, group, variable_name)
            edges = tuple(f"{types_[e['source']]}{e['path']} -> {types_[e['target']]}" for e in held["edges"]
                          if not e["weak"] and e["source"] in members and e["target"] in members)
            shape = by_shape.setdefault(edges, {
                "edges": list(edges), "count": 0,
                "closing": [f"{types_[e['source']]}{e['path']} -> {types_[e['target']]}" for e in closing],
                "fix": fix_for(closing[0], types_[closing[0]["source"]]) if closing else "",
            })
            shape["count"] += 1
        found = list(by_shape.values())
    del garbage, nodes_in_garbage
    gc.collect()
    gc.enable()
    # The picture's cycle: the same rule on the live graph.
    live_groups = strongly_connected(picture)
    for group in live_groups:
        for edge in picture["edges"]:
            if edge["source"] in group and edge["target"] in group and not edge["weak"]:
                edge["cycle"] = True
        for edge in closing_edges(picture, group, variable_name):
            edge["closing"] = True
    return {"cycles": found, "containers_in_cycles_per_graph": len(within), "graph": picture}


def collected(engine: Any, op: Any, depth: int) -> int:
    """Objects a collection frees of one dropped chain of `depth` ops (size-1 arrays)."""
    gc.disable()
    try:
        gc.collect()
        x, outputs = _chain(engine, op, depth, size=1)
        del x, outputs
        return gc.collect()
    finally:
        gc.enable()


def cycle_containers(engine: Any, op: Any) -> dict[str, int] | None:
    """Containers a collection frees per graph as `per_op * depth + fixed`,
    fitted at depths 1 and 2 and confirmed at 3 and 5 (None where it is not
    linear: no object-count model then, bytes only)."""
    one, two = collected(engine, op, 1), collected(engine, op, 2)
    per_op, fixed = two - one, 2 * one - two
    if all(collected(engine, op, d) == per_op * d + fixed for d in (3, 5)):
        return {"per_op": per_op, "fixed": fixed}
    return None


def anatomy(variant: str) -> dict[str, Any]:
    from engine.variants import get_variant

    engine = get_variant(variant).load()
    op_name, op = _op(engine)
    found: dict[str, Any] = {"variant": variant, "python": sys.version.split()[0], "op": op_name,
                             "depth": DEPTH, "size": SIZE}
    found.update(ownership(engine, op))
    found.update(grads(engine, op))
    found["no_grad_mode"] = no_grad_mode(engine)
    found["containers_per_op"] = containers_per_op(engine, op)
    found.update(cycles(engine, op))
    if found["ownership"] != "cycles":
        found["cycles"] = []
        found["containers_in_cycles_per_graph"] = 0
        found["cycle_containers"] = None
    else:
        found["cycle_containers"] = cycle_containers(engine, op)
    return found


def main() -> int:
    if "--pickled" in sys.argv[2:]:  # a variant the caller registered, sent on stdin
        from engine.variants import register_pickled

        register_pickled(sys.stdin.read())
    print(json.dumps(anatomy(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
