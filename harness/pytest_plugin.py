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
paused, and fails the test with the limit and the measured bytes. Markers on
the test's class and module apply too: the strictest limit of each kind wins.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from harness.assertions import limit_numpy_memory, parse_bytes, track_numpy_memory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "limit_numpy_memory(peak=None, retained=None, gc_enabled=False): fail when the test body's "
        "numpy-domain peak or retained array bytes exceed the limits (bytes or '640 kB')",
    )


def _limits(item: pytest.Item) -> dict[str, Any] | None:
    """Every limit_numpy_memory marker on the test, its class and its module,
    as one: the strictest peak and retained limits; gc_enabled from the closest."""
    markers = list(item.iter_markers("limit_numpy_memory"))  # closest first
    if not markers:
        return None
    limits: dict[str, Any] = {"gc_enabled": False}
    for n, marker in enumerate(markers):
        given = dict(zip(("peak", "retained", "gc_enabled"), marker.args), **marker.kwargs)
        for name in ("peak", "retained"):
            if given.get(name) is not None:
                value = parse_bytes(given[name])
                limits[name] = value if name not in limits else min(limits[name], value)
        if n == 0 and "gc_enabled" in given:
            limits["gc_enabled"] = given["gc_enabled"]
    return limits


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    limits = _limits(item)
    if limits is None:
        return (yield)
    # A test that fails on its own raises out of the block: reported as itself, limits unchecked.
    with limit_numpy_memory(**limits):
        return (yield)


@pytest.fixture
def numpy_memory() -> Callable[..., Any]:
    """`track_numpy_memory`, as a fixture."""
    return track_numpy_memory
