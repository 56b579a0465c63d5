"""two_ops -- an experiment of your own: `harness run examples/my_experiment.py`.

Each iteration builds y = x*x + x: three arrays (x, x*x, y) of `size` floats.
weakref frees a graph when y is rebound, so one graph is held and two at the
peak; strongref's graphs are cycles, so with the GC off every graph is held.
"""
from harness import GC_PARAM, Expectation, Expected, Experiment, Ordering, Param


def workload(bench):
    eng, p = bench.engine, bench.params
    for _ in bench.iterations(p.iterations):
        x = eng.variable(bench.random_array(p.size))
        y = eng.add(eng.mul(x, x), x)  # noqa: F841 - the graph held until the next iteration rebinds y


def expected(variant, p):
    graph = 3 * p.size * 8  # three float64 arrays
    if variant == "strongref" and p.gc == "off":
        return Expected(p.iterations * graph, p.iterations * graph)
    if variant == "weakref":
        return Expected(graph, graph * min(p.iterations, 2))
    return Expected(None)  # no claim: the trial is measured, not judged


def expectations(variant, p):
    model = expected(variant, p)
    if model.numpy_bytes_final is None:
        return []
    return [Expectation(f"{variant}: the graphs the model says are alive", "numpy_bytes_final", "==",
                        model.numpy_bytes_final),
            Expectation(f"{variant}: and at the peak", "numpy_bytes_peak", "==", model.numpy_bytes_peak)]


EXPERIMENT = Experiment(
    name="two_ops", title="y = x*x + x, built again and again", seed_step="-",
    claim="strongref holds every graph until a collection; weakref holds one",
    workload=workload, variants=("strongref", "weakref"),
    params=(Param("iterations", int, 5, "graphs built", minimum=1), Param("size", int, 1000, "floats per array",
                                                                            minimum=1), GC_PARAM),
    expected=expected, expectations=expectations,
    comparisons=(Ordering("strongref holds more than weakref", "numpy_bytes_final", ">",
                          {"variant": "strongref"}, {"variant": "weakref"}),),
    ops=lambda p: frozenset({"add", "mul"}),  # a user's engine without them is refused before it runs
)
