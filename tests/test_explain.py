"""`harness explain`: each engine's graph ownership, grads and no-grad mode as
observed, the reference that closes its cycle named edge by edge, and the
picture -- for our variants, the book's own step-16 code, a micrograd-like
engine whose cycle is a closure, and PyTorch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.adapters import torch_engine
from harness.explain import examine, rows

ROOT = Path(__file__).resolve().parent.parent
ENGINES = Path(__file__).resolve().parent / "engines"


@pytest.fixture(scope="module")
def found() -> dict[str, dict]:
    names = ["strongref", "weakref", "retain_grad", "no_grad", f"file:{ENGINES / 'book_step16.py'}",
             f"file:{ENGINES / 'micrograd_like.py'}"]
    return {name.rsplit("/", 1)[-1]: examine(name) for name in names}


def test_strongref_is_held_by_its_cycle_named_edge_by_edge(found) -> None:
    strongref = found["strongref"]
    assert (strongref["graph_recorded"], strongref["ownership"]) == (True, "cycles")
    (cycle,) = strongref["cycles"]
    assert cycle["count"] == 3  # one per op of the depth-3 chain
    assert cycle["edges"] == ["Square.outputs[0].obj -> Variable", "Variable.creator -> Square"]
    assert cycle["closing"] == ["Square.outputs[0].obj -> Variable"]
    assert "weakref.ref" in cycle["fix"] and "step 17" in cycle["fix"]
    # what a collection of one depth-3 graph frees: 3 Variables, 3 Squares, their 6 lists,
    # 3 StrongRefs -- and the leaf's Variable, which only the graph held
    assert strongref["containers_in_cycles_per_graph"] == 16
    assert strongref["intermediate_grads"] == "kept"


def test_the_book_s_step_16_has_the_same_cycle_in_fewer_containers(found) -> None:
    book = found["book_step16.py"]
    assert book["ownership"] == "cycles"
    (cycle,) = book["cycles"]
    assert cycle["edges"] == ["Square.outputs[0] -> Variable", "Variable.creator -> Square"]
    assert cycle["closing"] == ["Square.outputs[0] -> Variable"]
    assert book["containers_in_cycles_per_graph"] == 13  # no StrongRef wrappers
    assert book["no_grad_mode"] == []  # step 16 has no Config yet


def test_a_closure_cycle_comes_out_as_clearly(found) -> None:
    micro = found["micrograd_like.py"]
    assert micro["ownership"] == "cycles"
    (cycle,) = micro["cycles"]
    assert cycle["closing"] == ["Value._backward.<closure out> -> Value"]
    assert "captures its own node as `out`" in cycle["fix"] and "weakref.ref(out)" in cycle["fix"]


def test_the_step_17_and_18_variants_are_classified_as_they_behave(found) -> None:
    assert (found["weakref"]["ownership"], found["weakref"]["cycles"]) == ("refcount", [])
    assert found["weakref"]["intermediate_grads"] == "kept"
    assert found["retain_grad"]["ownership"] == "refcount"
    assert (found["retain_grad"]["intermediate_grads"], found["retain_grad"]["retain_grad"]) == ("freed", "honoured")
    no_grad = found["no_grad"]
    assert (no_grad["graph_recorded"], no_grad["ownership"], no_grad["backward"]) == (False, "none", False)
    assert "Config.enable_backprop" in no_grad["no_grad_mode"] and "no_grad()" in no_grad["no_grad_mode"]
    assert dict(rows(no_grad))["graph ownership"] == "no graph recorded"


def test_torch_frees_its_graph_by_reference_counting() -> None:
    if not torch_engine.torch_available():
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail("PyTorch 2.13.0 is not installed: pip install -e .[test,compare]")
        pytest.skip("PyTorch 2.13.0 is not installed")
    torch = examine("torch")
    assert (torch["ownership"], torch["cycles"], torch["intermediate_grads"]) == ("refcount", [], "freed")
    assert torch["no_grad_mode"] == ["torch.no_grad()"]
    assert "AccumulateGrad" in {n["type"] for n in torch["graph"]["nodes"]}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_cli_prints_the_table_the_cycle_and_draws_the_picture(tmp_path: Path) -> None:
    done = cli("explain", "strongref", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "graph ownership  held by reference cycles until the cyclic GC runs" in done.stdout
    assert "  Square.outputs[0].obj -> Variable   <- closes it" in done.stdout
    for suffix in ("png", "svg", "dot"):
        assert (tmp_path / f"strongref.{suffix}").stat().st_size > 0
    dot = (tmp_path / "strongref.dot").read_text()
    assert dot.count("penwidth=3") == 3 and 'label=".creator"' in dot  # the closing references, thick
    machine = json.loads(cli("explain", "weakref", "--json", "--no-picture", cwd=tmp_path).stdout)
    assert machine["ownership"] == "refcount" and machine["pictures"] == []
    assert any(edge["weak"] for edge in machine["graph"]["edges"])  # outputs held through weakref.ref


def test_a_bad_variant_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = cli("explain", "strongrefs", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("harness: error: unknown variant 'strongrefs'")
    missing = cli("explain", f"file:{tmp_path / 'nope.py'}", cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
