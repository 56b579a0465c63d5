"""Real engines plug in as they are: a file imports under its own name, an
op the workload does not use is not required, Config settings are chosen on
the command line, a variant registered in the caller's process runs in the
trials, and an engine without DeZero names brings its own EngineAPI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness
from harness.inference import INFERRED

ROOT = Path(__file__).resolve().parent.parent
ENGINES = Path(__file__).resolve().parent / "engines"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def small(experiment: str, variant: str, tmp_path: Path, **params) -> harness.Run:
    return harness.run(experiment, variants=[variant], params=params, out=tmp_path, probes=["tracemalloc", "gc"],
                       plots=False, progress=False)


def test_a_file_imports_under_its_own_name_so_its_helpers_share_it(tmp_path: Path) -> None:
    code = ("from engine.adapters.plugin import load_plugin\n"
            f"module = load_plugin('file:{ENGINES / 'selfimport' / 'learner_engine.py'}')\n"
            "print(module.__name__, module.ONE_COPY)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.stdout.split() == ["learner_engine", "True"], done.stderr
    run = small("exp17", f"file:{ENGINES / 'selfimport' / 'learner_engine.py'}", tmp_path, iterations=3)
    assert run.summary.loc[0, "status"] == "ok"


def test_an_op_the_workload_does_not_use_is_not_required(tmp_path: Path) -> None:
    step20 = f"file:{ENGINES / 'book_step20.py'}"
    refused = cli("run", "exp17", "--variant", step20, "--out", str(tmp_path), cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr == (f"harness: error: variant {step20!r} has no square, which exp17 needs; "
                              "it offers add, mul\n")
    assert not (tmp_path / "exp17").exists()
    run = small("exp18_retain_grad", step20, tmp_path, op="add")
    checks = run.checks()
    assert run.summary.loc[0, "model_source"] == INFERRED and checks and all(c.passed for c in checks)


def test_config_settings_are_chosen_on_the_command_line(tmp_path: Path) -> None:
    step18 = f"file:{ENGINES / 'book_step18.py'}"
    done = cli("run", "exp18_no_grad", "--variant", f"{step18}[no_grad]", "--probe", "tracemalloc", "--no-plots",
               "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = harness.load(next((tmp_path / "exp18_no_grad").iterdir()))
    assert run.summary.loc[0, "model_variant"] == "no_grad"  # the file as itself, with backprop off
    assert all(c.passed for c in run.checks()) and run.checks()
    for bad, said in ((f"{step18}[foo=1]", "the engine has no Config.foo to set"),
                      (f"{step18}[a b]", "a setting is NAME=VALUE (a Config attribute) or no_grad; got 'a b'")):
        refused = cli("run", "exp17", "--variant", bad, "--out", str(tmp_path), cwd=tmp_path)
        assert refused.returncode == 2 and refused.stderr == f"harness: error: variant {bad!r}: {said}\n"


def test_a_variant_registered_in_the_callers_process_runs_in_the_trials(tmp_path: Path) -> None:
    from engine.interface import DezeroStyleEngine
    from engine.variants import _REGISTRY, Variant, register

    def by_hand():  # a notebook's loader: pickled by value for the trials
        import engine

        return DezeroStyleEngine(engine, "step16_by_hand", {"weak_outputs": False, "free_intermediate_grads": False})

    register(Variant("step16_by_hand", "a notebook", "step 16 by hand", load=by_hand))
    try:
        run = small("exp17", "step16_by_hand", tmp_path, iterations=10, gc="off")
    finally:
        _REGISTRY.pop("step16_by_hand")
    row = run.summary.loc[0]
    assert (row["status"], row["numpy_bytes_final"]) == ("ok", 3_200_000)  # every graph held
    assert (row["model_source"], row["model_variant"]) == (INFERRED, "strongref")
    assert all(c.passed for c in run.checks())


def test_an_engine_without_dezero_names_brings_its_own(tmp_path: Path) -> None:
    micrograd = f"file:{ENGINES / 'micrograd_engine.py'}"
    run = small("exp16", micrograd, tmp_path, iterations=10)
    row = run.summary.loc[0]
    assert (row["model_source"], row["model_variant"]) == (INFERRED, "strongref")
    assert row["gc_collected_objects"] == 10 * (7 * 3 + 3)  # its own containers per graph
    checks = run.checks()
    assert checks and all(c.passed for c in checks), [c.line() for c in checks]


def test_census_and_gc_figures_stay_right_for_an_engine_built_on_abc(tmp_path: Path) -> None:
    """isinstance() on an ABC fills abc's caches: the census must not make the
    collector run (gc=off: no collection) nor move it (gc=on: the blind twin agrees)."""
    abc_engine = f"file:{ENGINES / 'abc_step16.py'}"
    off = harness.run("exp17", variants=[abc_engine], params={"gc": "off", "iterations": 30}, out=tmp_path / "off",
                      probes=["tracemalloc", "gc", "census"], plots=False, progress=False)
    row = off.summary.loc[0]
    assert (row["gc_collections"], row["live_variables_final"]) == (0, 30 * 4)
    assert row["model_variant"] == "strongref" and all(c.passed for c in off.checks())
    on = harness.run("exp17", variants=[abc_engine], params={"iterations": 300}, out=tmp_path / "on",
                     probes=["tracemalloc", "gc", "census"], plots=False, progress=False, verify_observer=True)
    assert on.summary.loc[0, "gc_collections"] >= 1
    assert on.checks() and all(c.passed for c in on.checks()), [c.line() for c in on.checks() if not c.passed]


def test_an_import_error_names_the_user_s_line_what_it_wrote_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    engine = tmp_path / "npbad.py"
    engine.write_text('import sys\nimport numpy as np\nprint("loading my engine", file=sys.stderr)\n\n'
                      "x = np.float(1)\n", encoding="utf-8")
    done = cli("run", "exp17", "--variant", f"file:{engine}", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"harness: error: variant 'file:{engine}': importing npbad.py failed: AttributeError: "
                           "module 'numpy' has no attribute 'float'. (npbad.py, line 5); "
                           "it wrote to stderr: loading my engine\n")
    debug = cli("run", "exp17", "--variant", f"file:{engine}", "--out", str(tmp_path), "--debug", cwd=tmp_path)
    assert f'File "{engine}", line 5, in <module>' in debug.stderr  # the import's own traceback


def test_an_engine_without_function_is_warned_of(tmp_path: Path) -> None:
    engine = tmp_path / "nofunc.py"
    engine.write_text("from engine.core import Variable, square  # noqa: F401\n", encoding="utf-8")
    done = cli("run", "exp17", "--variant", f"file:{engine}", "--probe", "tracemalloc", "--no-plots", "--out",
               str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"variant 'file:{engine}' defines no Function: its live_functions figures stay empty" in done.stderr
