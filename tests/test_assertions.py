"""The memory assertions users put in their own tests: each fails on the leaking
engine (strongref, step 16: every graph a cycle) and passes on the fixed one
(weakref, step 17), with exact numpy-domain bytes and a message naming the limit
and the measured value."""
from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from engine.variants import get_variant
from harness.assertions import (
    FreedGraph,
    NumpyMemoryLimitExceeded,
    assert_freed_without_gc,
    assert_max_numpy_peak,
    assert_max_numpy_retained,
    format_bytes,
    limit_numpy_memory,
    parse_bytes,
    track_numpy_memory,
)
from harness.meta import PROJECT_ROOT

SIZE = 10_000
ARRAY = SIZE * 8  # float64
GRAPH = 4 * ARRAY  # x and three square() outputs: 320,000 bytes


@pytest.fixture(params=["weakref", "strongref"])
def engine_variant(request):
    engine = get_variant(request.param).load()
    with engine.configured():
        yield engine


def make_graph(engine):
    """The seeds' step-17 graph: y = square(square(square(x))), 4 arrays."""
    return engine.square(engine.square(engine.square(engine.variable(np.ones(SIZE)))))


def training_loop(engine, iterations=5):
    for _ in range(iterations):
        y = make_graph(engine)  # noqa: F841 - rebinding y drops the previous graph
    return None


def leaks(engine) -> bool:
    return engine.name == "strongref"


def test_track_numpy_memory_counts_the_graphs_arrays_exactly(engine_variant):
    with track_numpy_memory() as mem:
        y = make_graph(engine_variant)
        assert mem.current == GRAPH
        del y
    assert mem.peak == GRAPH
    assert mem.retained == (GRAPH if leaks(engine_variant) else 0)


def test_arrays_allocated_before_the_block_are_not_charged_to_it():
    before = np.ones(SIZE)
    with track_numpy_memory() as mem:
        del before
        kept = np.zeros(SIZE)
    assert (mem.peak, mem.retained) == (ARRAY, ARRAY)
    del kept


def test_limit_numpy_memory_retained_zero(engine_variant):
    if leaks(engine_variant):
        with pytest.raises(NumpyMemoryLimitExceeded) as failure:
            with limit_numpy_memory(retained=0):
                y = make_graph(engine_variant)
                del y
        assert str(failure.value) == "retained 320.0 kB (320,000 bytes) of numpy arrays; limit 0 B"
    else:
        with limit_numpy_memory(retained=0) as mem:
            y = make_graph(engine_variant)
            del y
        assert mem.retained == 0


def test_limit_numpy_memory_as_a_decorator(engine_variant):
    @limit_numpy_memory(retained="0 B")
    def step():
        make_graph(engine_variant)

    if leaks(engine_variant):
        with pytest.raises(NumpyMemoryLimitExceeded, match=r"retained 320\.0 kB \(320,000 bytes\)"):
            step()
    else:
        step()


def test_assert_max_numpy_peak_over_a_training_loop(engine_variant):
    # weakref: the new graph is built while the old one is still bound to y: two graphs.
    if leaks(engine_variant):
        with pytest.raises(NumpyMemoryLimitExceeded) as failure:
            assert_max_numpy_peak("640 kB", training_loop, engine_variant, iterations=5)
        assert str(failure.value) == (
            "peak 1.6 MB (1,600,000 bytes) of numpy arrays; limit 640.0 kB (640,000 bytes)"
        )
    else:
        assert assert_max_numpy_peak("640 kB", training_loop, engine_variant, iterations=5) is None
        with pytest.raises(NumpyMemoryLimitExceeded, match=r"^peak 640\.0 kB \(640,000 bytes\) of numpy arrays; "
                           r"limit 640\.0 kB \(639,999 bytes\)$"):
            assert_max_numpy_peak(2 * GRAPH - 1, training_loop, engine_variant, iterations=5)


def test_assert_max_numpy_retained_over_a_training_loop(engine_variant):
    if leaks(engine_variant):
        with pytest.raises(NumpyMemoryLimitExceeded) as failure:
            assert_max_numpy_retained(0, training_loop, engine_variant, iterations=5)
        assert "retained 1.6 MB (1,600,000 bytes) of numpy arrays; limit 0 B" == str(failure.value)
    else:
        assert_max_numpy_retained(0, training_loop, engine_variant, iterations=5)


def test_assert_freed_without_gc(engine_variant):
    if leaks(engine_variant):
        with pytest.raises(NumpyMemoryLimitExceeded) as failure:
            assert_freed_without_gc(make_graph, engine_variant)
        assert str(failure.value) == (
            "the result was not freed without the cyclic GC: retained 320.0 kB (320,000 bytes) of numpy "
            "arrays after it was dropped (it held 320.0 kB (320,000 bytes)); limit 0 B; a gc.collect() "
            "then freed all of it: the graph is a reference cycle"
        )
    else:
        assert assert_freed_without_gc(make_graph, engine_variant) == FreedGraph(held=GRAPH, retained=0)


def test_assert_freed_without_gc_tells_a_reference_held_elsewhere_from_a_cycle():
    engine = get_variant("weakref").load()
    kept = []

    def make_and_keep():
        y = make_graph(engine)
        kept.append(y)
        return y

    with engine.configured(), pytest.raises(NumpyMemoryLimitExceeded, match="freed none of it: something still"):
        assert_freed_without_gc(make_and_keep)


def test_assert_freed_without_gc_refuses_a_result_holding_no_array():
    with pytest.raises(NumpyMemoryLimitExceeded, match="no graph whose freeing could be checked"):
        assert_freed_without_gc(lambda: None)


def test_the_gc_is_paused_in_the_block_and_restored_after():
    assert gc.isenabled()
    with track_numpy_memory():
        assert not gc.isenabled()
    assert gc.isenabled() and not tracemalloc.is_tracing()
    with track_numpy_memory(gc_enabled=True):
        assert gc.isenabled()


def test_nested_tracking_is_refused():
    with track_numpy_memory():
        with pytest.raises(RuntimeError, match="already tracing"):
            with track_numpy_memory():
                pass


def test_limits_read_as_bytes_or_units():
    assert [parse_bytes(x) for x in (0, 512, "640 kB", "1.5 MB", "2 MiB", "3KiB", "7")] == [
        0, 512, 640_000, 1_500_000, 2 * 2**20, 3 * 1024, 7,
    ]
    for bad in ("lots", "5 parsecs", "-1 kB", -1, 1.5, True):
        with pytest.raises((ValueError, TypeError)):
            parse_bytes(bad)
    assert [format_bytes(n) for n in (0, 999, 1000, 6_400_000, 2_000_000_000)] == [
        "0 B", "999 B", "1.0 kB (1,000 bytes)", "6.4 MB (6,400,000 bytes)", "2.0 GB (2,000,000,000 bytes)",
    ]


def run_user_suite(tmp_path) -> subprocess.CompletedProcess:
    """pytest on tmp_path/test_user_suite.py with the plugin, as a user's suite runs."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "harness.pytest_plugin", "-p", "no:cacheprovider",
         str(tmp_path / "test_user_suite.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )


def test_the_pytest_plugin_marker_and_fixture(tmp_path):
    (tmp_path / "test_user_suite.py").write_text(textwrap.dedent("""
        import numpy as np
        import pytest
        from engine.variants import get_variant

        def graph(name):
            engine = get_variant(name).load()
            with engine.configured():
                y = engine.square(engine.square(engine.square(engine.variable(np.ones(10_000)))))
                del y

        @pytest.mark.limit_numpy_memory(retained=0, peak="320 kB")
        def test_weakref_frees_its_graph():
            graph("weakref")

        @pytest.mark.limit_numpy_memory(retained=0)
        def test_strongref_frees_its_graph():
            graph("strongref")

        def test_fixture(numpy_memory):
            with numpy_memory() as mem:
                a = np.zeros(1000)
            assert (mem.peak, mem.retained) == (8000, 8000)
    """))
    done = run_user_suite(tmp_path)
    assert "1 failed, 2 passed" in done.stdout, done.stdout + done.stderr
    assert "FAILED test_user_suite.py::test_strongref_frees_its_graph" in done.stdout
    assert ("NumpyMemoryLimitExceeded: retained 320.0 kB (320,000 bytes) of numpy arrays; limit 0 B"
            in done.stdout)


def test_markers_on_the_module_and_class_apply_too_the_strictest_wins(tmp_path):
    (tmp_path / "test_user_suite.py").write_text(textwrap.dedent("""
        import numpy as np
        import pytest

        pytestmark = pytest.mark.limit_numpy_memory(retained=0)  # the whole module frees what it makes

        class TestLimits:
            pytestmark = pytest.mark.limit_numpy_memory(peak="10 kB")

            @pytest.mark.limit_numpy_memory(peak="1 MB")
            def test_keeps_an_array(self):  # fails the module's retained=0
                self.kept = np.zeros(100)

            @pytest.mark.limit_numpy_memory(peak="1 MB")
            def test_peaks_above_the_class_limit(self):  # fails the class's 10 kB, the stricter peak
                a = np.zeros(5_000)
                del a

            def test_within_every_limit(self):
                a = np.zeros(100)
                del a
    """))
    done = run_user_suite(tmp_path)
    assert "2 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    assert "NumpyMemoryLimitExceeded: retained 800 B of numpy arrays; limit 0 B" in done.stdout
    assert "peak 40.0 kB (40,000 bytes) of numpy arrays; limit 10.0 kB (10,000 bytes)" in done.stdout
