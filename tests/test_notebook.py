"""The Python API in a real Jupyter kernel (nbclient + ipykernel, headless):
`%matplotlib inline`, a run, its figures, and the user's own pyplot figures
and `plt.show()` still working afterwards; the run renders as HTML and its
progress as a notebook widget."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    "%matplotlib inline\n"
    "import matplotlib, matplotlib.pyplot as plt\n"
    "backend_before = matplotlib.get_backend()\n"
    "rc_before = dict(matplotlib.rcParams)",

    # The inline backend shows and closes a cell's open figures when the cell
    # ends: the user's figure must be the only one shown, before and after a run.
    "import harness\n"
    "mine = plt.figure(); plt.plot([1, 2, 3])\n"
    "figures_before = plt.get_fignums()\n"
    "run = harness.run('exp17', params={'gc': 'off', 'iterations': 3}, out=OUT)\n"
    "figures = run.figures()\n"
    "assert matplotlib.get_backend() == backend_before, matplotlib.get_backend()\n"
    "assert dict(matplotlib.rcParams) == rc_before\n"
    "assert plt.get_fignums() == figures_before, plt.get_fignums()\n"
    "assert sorted(figures) >= ['memory', 'summary'], sorted(figures)\n"
    "run",

    "plt.figure(); plt.plot([3, 2, 1]); plt.show()\n"
    "print('backend', matplotlib.get_backend())",

    # An experiment of the user's own, defined in a cell: its trials get it pickled.
    "def workload(bench):\n"
    "    for _ in bench.iterations(bench.params.iterations):\n"
    "        x = bench.engine.variable(bench.random_array(1000))\n"
    "        y = bench.engine.mul(x, bench.engine.exp(x))\n"
    "def expected(variant, p):\n"
    "    return harness.Expected(3 * 8000, 6 * 8000) if variant == 'weakref' else harness.Expected(None)\n"
    "def expectations(variant, p):\n"
    "    m = expected(variant, p)\n"
    "    return [harness.Expectation('one graph', 'numpy_bytes_final', '==', m.numpy_bytes_final),\n"
    "            harness.Expectation('two at the peak', 'numpy_bytes_peak', '==', m.numpy_bytes_peak)]\n"
    "mine = harness.Experiment(name='cell_experiment', title='x * exp(x)', seed_step='-', claim='-',\n"
    "    workload=workload, variants=('weakref',), expected=expected, expectations=expectations,\n"
    "    params=(harness.Param('iterations', int, 5, 'graphs', minimum=1),), ops=lambda p: {'mul', 'exp'})\n"
    "own = harness.run(mine, out=OUT)\n"
    "print('own', own.meta['status'], [c.line()[:4] for c in own.checks()], sorted(own.figures()))",
]


def test_the_api_in_a_real_kernel_leaves_the_users_matplotlib_working(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"OUT = {str(tmp_path / 'results')!r}")] + [
        nbformat.v4.new_code_cell(source) for source in CELLS]
    env_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    client = nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path  # the kernel imports this checkout, as a user's would after install
    try:
        client.execute()  # raises CellExecutionError, with the cell's traceback, if an assertion fails
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old

    _, setup, run_cell, after, own = notebook.cells
    shown = [o for o in run_cell.outputs if o.get("output_type") == "execute_result"]
    drawn = [o for o in run_cell.outputs if o.get("output_type") == "display_data" and "image/png" in o["data"]]
    assert len(drawn) == 1  # the user's figure, and none of the run's (they are not pyplot's)
    html = shown[0]["data"]["text/html"]
    assert "status <b>ok</b>" in html and "checks 6 passed, 0 failed" in html
    assert 'src="data:image/png;base64,' in html  # the run's memory plot, inline
    widgets = [o for o in run_cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, [o.get("output_type") for o in run_cell.outputs]  # progress as a tqdm.auto widget
    images = [o for o in after.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the user's own plt.show() still draws, inline
    printed = "".join(o.get("text", "") for o in after.outputs if o.get("output_type") == "stream")
    assert printed.startswith("backend ") and "inline" in printed, printed
    printed = "".join(o.get("text", "") for o in own.outputs if o.get("output_type") == "stream")
    assert "own ok ['PASS', 'PASS'] ['memory', 'summary', 'timeline']" in printed, printed
