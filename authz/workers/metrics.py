"""/metrics with workers: the supervisor's own metrics plus every worker's, merged.

Each worker counts its own checks in its own registry, as a single process does (no shared
files, no lock on the check path: prometheus_client's multiprocess mode would add both). On a
scrape the supervisor asks every worker for its exposition text and merges by metric family:
counters and histograms are summed over the supervisor and all workers (same names, same
labels: `authz_decisions_total` is the pod's total); gauges are the supervisor's, which
compiles the same policies (`authz_policies`) and started first (`process_start_time_seconds`),
except the few listed below, which describe each process and are summed or maxed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

#: Gauges that add up across processes (the pod's memory and open files).
SUMMED_GAUGES = frozenset(
    {"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds"}
)
#: Gauges that say "1 if this is so in some process".
MAXED_GAUGES = frozenset({"authz_ratelimit_backend_mode"})
_ADDITIVE_TYPES = frozenset({"counter", "histogram", "summary"})


def _combine(kind: str, name: str, values: list[float]) -> float:
    if kind in _ADDITIVE_TYPES or name in SUMMED_GAUGES:
        return sum(values)
    if name in MAXED_GAUGES:
        return max(values)
    return values[0]  # the supervisor's


def merge(texts: Iterable[str]) -> list[Metric]:
    """Merged families of several expositions; the first text is the supervisor's."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
                values[family.name] = {}
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[family.name].setdefault(key, []).append(sample.value)
    for name, family in families.items():
        for (sample_name, labels), found in values[name].items():
            family.add_sample(sample_name, dict(labels), _combine(family.type, name, found))
    return list(families.values())


class _Static(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(texts: Iterable[str]) -> bytes:
    """The exposition text of the merged families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Static(merge(texts)))
    return generate_latest(registry)
