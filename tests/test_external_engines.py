"""External engines behind the variant interface: PyTorch, the official DeZero,
and a user's own engine file (the seed notebook's step 17 saved as a .py file).

The PyTorch and official-DeZero tests need the `compare` extra
(`pip install -e .[test,compare]`). Without it they are skipped with a reason
that `-ra` prints, except when MEMLAB_REQUIRE_EXTRAS=1 (CI sets it): then a
missing extra fails the test instead of hiding it.
"""
from __future__ import annotations

import json

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import engine
from engine.adapters import dezero_official, plugin, torch_engine
from engine.interface import BackwardUnavailable, DezeroStyleEngine
from engine import variants
from engine.variants import BadPluginError, UnknownVariantError, Variant, check_plugin, get_variant
import harness
from harness import cli
from harness.explain import examine
from harness.errors import UsageError
from harness.runner import RunConfig, make_plan, run_experiment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "step17_notebook.py"
NOTEBOOK_VARIANT = f"file:{NOTEBOOK}"
SIZE, DEPTH, ITERATIONS = 1000, 3, 4
ARRAY = SIZE * 8  # float64


def require_extra(available: bool, what: str) -> None:
    if available:
        return
    message = f"{what} is not installed: pip install -e .[test,compare]"
    if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
        pytest.fail(message)
    pytest.skip(message)


needs_torch = pytest.fixture(lambda: require_extra(torch_engine.torch_available(), "PyTorch 2.13.0"))
needs_dezero = pytest.fixture(lambda: require_extra(dezero_official.dezero_available(), "dezero 0.0.13"))


# --- one small exp17 run over every kind of engine ---------------------------------


@pytest.fixture(scope="module")
def exp17_run(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    variants = ["weakref", NOTEBOOK_VARIANT]
    if dezero_official.dezero_available():
        variants.append("dezero_official")
    if torch_engine.torch_available():
        variants += ["torch", "torch_no_grad"]
    config = RunConfig(
        "exp17", variants=variants,
        params={"iterations": ITERATIONS, "size": SIZE, "depth": DEPTH, "gc": "off"},
        probes=["tracemalloc", "rss", "census"], out=tmp_path_factory.mktemp("runs"),
        measure_overhead=False, plots=False,
        trial_env={"MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    result = run_experiment(config, show_progress=False)
    assert result.meta["status"] == "ok", result.meta.get("failed_trials")
    assert result.meta["trial_env"] == {"MALLOC_MMAP_THRESHOLD_": "65536"}
    return result.tables["samples"]


def numpy_bytes(samples: pd.DataFrame, variant: str) -> list[int]:
    return samples[samples["variant"] == variant]["numpy_bytes"].astype(int).tolist()


def test_notebook_file_holds_exactly_what_our_weakref_variant_holds(exp17_run: pd.DataFrame) -> None:
    graph = (DEPTH + 1) * ARRAY
    assert numpy_bytes(exp17_run, "weakref") == [0] + [graph] * ITERATIONS
    assert numpy_bytes(exp17_run, NOTEBOOK_VARIANT) == numpy_bytes(exp17_run, "weakref")
    notebook = exp17_run[exp17_run["variant"] == NOTEBOOK_VARIANT]
    # the census sees the notebook's own classes: x, two intermediates, y; three Squares
    assert notebook["live_variables"].iloc[-1] == DEPTH + 1
    assert notebook["live_functions"].iloc[-1] == DEPTH


def test_official_dezero_holds_exactly_what_our_weakref_variant_holds(needs_dezero, exp17_run: pd.DataFrame) -> None:
    assert numpy_bytes(exp17_run, "dezero_official") == numpy_bytes(exp17_run, "weakref")


@pytest.mark.parametrize("variant", ["torch", "torch_no_grad"])
def test_torch_numpy_and_census_figures_are_not_available_and_rss_is_measured(
    needs_torch, exp17_run: pd.DataFrame, variant: str
) -> None:
    trial = exp17_run[exp17_run["variant"] == variant]
    assert len(trial) == ITERATIONS + 1
    # not available is missing, never zero
    for column in ("numpy_bytes", "numpy_bytes_peak", "live_variables", "live_functions"):
        assert trial[column].isna().all(), column
    assert (trial["rss_bytes"] > 0).all()


# --- PyTorch adapter --------------------------------------------------------------------


def test_torch_leaf_shares_the_numpy_buffer_and_runs_on_one_thread(needs_torch) -> None:
    import torch

    eng = get_variant("torch").load()
    array = np.arange(4.0)
    x = eng.variable(array)
    assert np.shares_memory(x.detach().numpy(), array)
    assert x.requires_grad and torch.get_num_threads() == 1
    assert eng.numpy_visible is False and eng.variable_type is None and eng.function_type is None


def test_torch_gradients_match_ours(needs_torch) -> None:
    data = np.array([0.5, -1.25, 2.0])
    ours = get_variant("weakref").load()
    theirs = get_variant("torch").load()
    grads = []
    for eng in (ours, theirs):
        with eng.configured():
            x = eng.variable(data.copy())
            y = eng.add(eng.mul(eng.exp(eng.neg(x)), eng.square(x)), eng.sub(x, x))
            eng.backward(y)
            grads.append(eng.grad(x))
    # d/dx (e^-x x^2 + x - x) = e^-x (2x - x^2)
    np.testing.assert_allclose(grads[0], np.exp(-data) * (2 * data - data**2))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12)


def test_torch_keeps_intermediate_grads_only_when_asked(needs_torch) -> None:
    eng = get_variant("torch").load()
    for retain_grad, expected in ((False, None), (True, np.array([2.0]))):  # dy/dh = 2h
        with eng.configured():
            x = eng.variable(np.array([1.0]))
            h = eng.square(x)
            y = eng.square(h)
            eng.backward(y, retain_grad=retain_grad)
        got = eng.grad(h)
        assert (got is None) if expected is None else np.array_equal(got, expected)
        assert np.array_equal(eng.grad(x), [4.0])


def test_torch_no_grad_records_no_graph_and_has_no_backward(needs_torch) -> None:
    eng = get_variant("torch_no_grad").load()
    with eng.configured():
        y = eng.square(eng.variable(np.array([3.0])))
    assert y.grad_fn is None
    with pytest.raises(BackwardUnavailable, match="torch.no_grad"):
        eng.backward(y)


# --- official DeZero ------------------------------------------------------------------


def test_official_dezero_is_core_simple_loaded_without_importing_the_package(needs_dezero) -> None:
    module = dezero_official.load_core_simple()
    assert Path(module.__file__).name == "core_simple.py"
    assert Path(module.__file__).parent.name == "dezero"
    assert "dezero" not in sys.modules  # its __init__ would fail on numpy 2 (np.int)
    x = module.Variable(np.array(3.0))
    assert (x * x + 1).data == 10.0  # setup_variable() installed the operators


def test_the_official_ops_read_from_source_are_those_its_modules_offer(needs_dezero) -> None:
    """A plan is checked without importing the official DeZero in the run's process:
    the ops read from its source (ast) must be exactly those its loaded modules offer."""
    import subprocess

    script = ("import sys, json\n"
              "from engine.adapters import dezero_official as d\n"
              "from engine.interface import offered_ops\n"
              "before = 'dezero' in sys.modules\n"
              "static = [sorted(d.offered_ops(False)), sorted(d.offered_ops(True))]\n"
              "after = 'dezero' in sys.modules\n"
              "loaded = [sorted(offered_ops(d.load_core_simple())),\n"
              "          sorted(offered_ops(d.load_core()) | offered_ops(d.load_functions()))]\n"
              "print(json.dumps([before, after, static, loaded]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    before, after, static, loaded = json.loads(done.stdout)
    assert not before and not after  # reading the source imported nothing
    assert static == loaded and "softmax_cross_entropy" in static[1] and "linear" not in static[0]


def test_official_dezero_gradients_match_ours_and_free_intermediate_grads(needs_dezero) -> None:
    theirs = get_variant("dezero_official").load()
    ours = get_variant("retain_grad").load()
    results = []
    for eng in (ours, theirs):
        with eng.configured():
            x = eng.variable(np.array([0.5, 2.0]))
            h = eng.exp(x)
            y = eng.square(h)
            eng.backward(y)
            results.append((eng.grad(x), eng.grad(h)))
    (ours_gx, ours_gh), (gx, gh) = results
    np.testing.assert_allclose(gx, 2 * np.exp(2 * np.array([0.5, 2.0])))
    np.testing.assert_allclose(gx, ours_gx)
    assert gh is None and ours_gh is None


def test_official_dezero_no_grad_records_no_graph(needs_dezero) -> None:
    eng = get_variant("dezero_official_no_grad").load()
    with eng.configured():
        y = eng.square(eng.variable(np.array([3.0])))
    assert y.creator is None
    with pytest.raises(BackwardUnavailable):
        eng.backward(y)


# --- user engine files and modules -----------------------------------------------------------


def test_notebook_file_is_a_working_engine_as_it_is() -> None:
    variant = get_variant(NOTEBOOK_VARIANT)
    eng = variant.load()
    assert isinstance(eng, DezeroStyleEngine) and eng.variable_type.__name__ == "Variable"
    x = eng.variable(np.array(2.0))
    y = eng.square(eng.square(x))
    eng.backward(y)  # the notebook's step 17 backward() takes no retain_grad
    assert eng.grad(x) == 4 * 2.0**3
    with pytest.raises(NotImplementedError, match="does not provide 'exp'"):
        eng.exp(x)


def test_module_variant_loads_by_import_name() -> None:
    variant = get_variant("module:engine")
    assert variant.load().module is engine


@pytest.mark.parametrize(
    "source, message",
    [
        (None, "no such file"),
        ("import numpy\nvalue = undefined_name\n", "NameError: name 'undefined_name' is not defined (bad.py, line 2)"),
        ("def broken(:\n", "SyntaxError: invalid syntax (line 1)"),
        ("def square(x):\n    return x\n", "does not define Variable"),
        ("Variable = 1\ndef square(x):\n    return x\n", "Variable is a int, not a class"),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ],
)
def test_bad_engine_file_is_one_line_naming_what_is_wrong(tmp_path: Path, source: str | None, message: str) -> None:
    path = tmp_path / "bad.py"
    if source is not None:
        path.write_text(source)
    with pytest.raises(BadPluginError) as raised:
        check_plugin(f"file:{path}")
    assert isinstance(raised.value, UnknownVariantError)
    text = str(raised.value)
    assert message in text and "\n" not in text and f"file:{path}" in text


def test_engine_file_must_be_python(tmp_path: Path) -> None:
    path = tmp_path / "engine.txt"
    path.write_text("class Variable: pass\n")
    with pytest.raises(BadPluginError, match="not a Python file"):
        check_plugin(f"file:{path}")


def test_missing_module_is_named() -> None:
    with pytest.raises(BadPluginError, match="no module named 'no_such_engine_mod'"):
        check_plugin("module:no_such_engine_mod")


def test_bad_engine_file_on_the_command_line_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "my_engine.py"
    path.write_text("import numpy as np\nclass Variable:\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "exp17", "--variant", f"file:{path}", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 2
    # square is required by the experiment that calls it, not by every engine
    assert result.stderr.strip().splitlines() == [
        f"harness: error: variant 'file:{path}' has no square, which exp17 needs; it offers no op"
    ]
    assert not (tmp_path / "exp17").exists()  # refused before any trial or run directory


def test_engine_file_prints_stay_out_of_the_harness_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "chatty.py"
    path.write_text(NOTEBOOK.read_text() + "\nprint(y)\n")
    check_plugin(f"file:{path}")  # in a child process
    get_variant(f"file:{path}").load()  # here, as a trial does
    assert capsys.readouterr().out == ""


# --- missing extras -------------------------------------------------------------------------


@pytest.fixture
def extras_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if torch and dezero were not installed: find_spec is how availability is decided."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        if name.split(".")[0] in ("torch", "dezero"):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_list_says_which_extras_are_missing_and_how_to_install(extras_missing, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    for name, spec in (("torch", "torch==2.13.0"), ("torch_no_grad", "torch==2.13.0"),
                       ("dezero_official", "dezero==0.0.13"), ("dezero_official_no_grad", "dezero==0.0.13")):
        assert f"[not installed: pip install {spec} (every compared engine: pip install -e .[compare])]" in lines[name]
    assert "not installed" not in lines["weakref"]


@pytest.mark.parametrize("name, spec", [("torch", "torch==2.13.0"), ("dezero_official", "dezero==0.0.13")])
def test_selecting_a_missing_extra_is_one_line_with_the_install_command(
    extras_missing, name: str, spec: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(UsageError, match=rf"^variant '{name}' is not installed: pip install {spec} "):
        make_plan(RunConfig("exp17", variants=["weakref", name]))
    assert cli.main(["run", "exp17", "--variant", name]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pip install {spec}" in err[0]


def test_any_variant_that_is_not_available_is_refused_with_its_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(variants._REGISTRY, "never_installed", Variant("never_installed", "test", "an extra that is absent", load=lambda: None,
                     install_hint="pip install never-installed==1.0", available=lambda: False))
    with pytest.raises(UsageError, match="variant 'never_installed' is not installed: pip install never-installed==1.0"):
        make_plan(RunConfig("exp17", variants=["never_installed"]))


def test_the_official_full_core_loads_without_its_package_init_and_is_judged(needs_dezero, tmp_path: Path) -> None:
    """dezero/core.py (steps 33-60) with its functions, the failing __init__ never run."""
    code = ("import sys\nfrom engine.adapters.dezero_official import load_core\ncore = load_core()\n"
            "print(core.__name__, type(sys.modules['dezero']).__name__, hasattr(sys.modules['dezero'], 'transforms'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["dezero.core", "module", "False"], done.stderr
    explained = examine("dezero_official_core")
    assert (explained["ownership"], explained["intermediate_grads"], explained["retain_grad"]) == \
        ("refcount", "freed", "honoured")  # as the declared model (retain_grad's) says
    for experiment in ("exp17", "exp18_retain_grad"):
        run = harness.run(experiment, variants=["dezero_official_core"], out=tmp_path, probes=["tracemalloc"],
                          plots=False, progress=False)
        checks = run.checks()
        assert run.summary.loc[0, "model_variant"] == "retain_grad"
        assert checks and all(c.passed for c in checks), [c.line() for c in checks]


def test_torch_offers_exactly_the_ops_it_declares_and_they_run(needs_torch) -> None:
    """OPS is what a plan is checked against without importing torch: it must be the ops op() maps."""
    import torch

    assert tuple(torch_engine._torch_functions(torch)) == torch_engine.OPS
    eng = get_variant("torch").load()
    x, W = np.ones((4, 2)), np.full((2, 3), 0.5)
    with eng.configured():
        y = eng.op("linear")(eng.variable(x), eng.variable(W), np.zeros(3))
        loss = eng.op("softmax_cross_entropy")(y, np.array([0, 1, 2, 0]))
    assert tuple(y.shape) == (4, 3) and np.isclose(float(loss.detach()), np.log(3))
    with pytest.raises(NotImplementedError, match="does not provide 'conv2d'"):
        eng.op("conv2d")
