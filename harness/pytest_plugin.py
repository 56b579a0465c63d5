"""pytest plugin: numpy-memory limits as a marker, tracking as a fixture.

Enable it with `-p harness.pytest_plugin` (or `pytest_plugins =
["harness.pytest_plugin"]` in a root conftest.py); then

    @pytest.mark.limit_numpy_memory(retained=0, peak="640 kB")
    def test_training_step_frees_its_graph(): ...

    def test_peak(numpy_memory):
        with numpy_memory() as mem:
            ...
        assert mem.peak == 640_000

The marker tracks the test's body (not its fixtures) with the cyclic GC
paused, and fails the test with the limit and the measured bytes.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from harness.assertions import limit_numpy_memory, track_numpy_memory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "limit_numpy_memory(peak=None, retained=None, gc_enabled=False): fail when the test body's "
        "numpy-domain peak or retained array bytes exceed the limits (bytes or '640 kB')",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("limit_numpy_memory")
    if marker is None:
        return (yield)
    # A test that fails on its own raises out of the block: reported as itself, limits unchecked.
    with limit_numpy_memory(*marker.args, **marker.kwargs):
        return (yield)


@pytest.fixture
def numpy_memory() -> Callable[..., Any]:
    """`track_numpy_memory`, as a fixture."""
    return track_numpy_memory
