"""The probes, by name. Each is one small module; see its docstring for what
it sees and what it does not."""
from __future__ import annotations

from harness.probes.base import Probe, TrialState
from harness.probes.census import CensusProbe
from harness.probes.cycle_debt import CycleDebtProbe
from harness.probes.gc_events import GcProbe
from harness.probes.rss import RssProbe, UssProbe
from harness.probes.tracemalloc_probe import TracemallocProbe

# Probes that take part at sample points, in the order they sample:
# tracemalloc first, so its per-interval peak closes before the others run.
SAMPLE_PROBES: dict[str, type[Probe]] = {
    probe.name: probe for probe in (TracemallocProbe, RssProbe, UssProbe, CensusProbe, GcProbe, CycleDebtProbe)
}
# `sampled` wraps the whole workload instead (see harness.probes.sampled).
SAMPLED = "sampled"
PROBE_NAMES = (*SAMPLE_PROBES, SAMPLED)
DEFAULT_PROBES = ("tracemalloc", "rss", "gc", "census", SAMPLED)

PROBE_DESCRIPTIONS = {name: probe.description for name, probe in SAMPLE_PROBES.items()}
PROBE_DESCRIPTIONS[SAMPLED] = (
    "RSS timeline over the workload, read every 5 ms by a watcher process started beside the trial "
    "(not a fork: harness.probes.rss_watch; memory_profiler off Linux), for peaks between samples"
)



def sample_columns_for(probe_names: list[str] | tuple[str, ...], blind: bool = False) -> list[str]:
    """The columns of a trial's sample rows (the sample file's layout) for its probes."""
    from harness.probes.sampler import sample_columns

    chosen = [] if blind else [SAMPLE_PROBES[name] for name in SAMPLE_PROBES if name in probe_names]
    return sample_columns(chosen)


__all__ = ["DEFAULT_PROBES", "PROBE_NAMES", "Probe", "SAMPLE_PROBES", "SAMPLED", "TrialState", "sample_columns_for"]
