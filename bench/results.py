"""The numbers of one `make bench`, their aggregation across rounds, and the targets of issue 7.

Plain dataclasses, so bench/out/results.json is `dataclasses.asdict` of `Results` and the report
and chart read the same objects the run produced. Rounds are combined by the median, per metric:
with interleaved rounds a slow moment of the machine lands in one round of every setup, and the
median keeps one such moment from deciding a number.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import WrkResult

#: Issue 7's targets.
THROUGHPUT_RATIO_MIN = 0.35
P99_RATIO_MAX = 3.0
CPU_US_MAX = 120.0
COMPILE_10K_MAX_S = 2.0
RSS_10K_MAX_MB = 300.0


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One measured wrk run of one setup."""

    setup: str
    round: int
    wrk: WrkResult
    #: CPU seconds each process spent during the run: gateway, upstream, sidecar, wrk.
    cpu_s: dict[str, float]
    #: Share of the machine's CPU time that was busy during the run (0..1).
    machine_busy: float
    #: Busy CPU seconds not spent by the processes above: other programs on the machine, and
    #: kernel work (e.g. loopback softirq) not charged to a process.
    other_cpu_s: float
    #: How many requests Envoy's filter counter says it let through (None without a filter).
    filter_allowed: int | None
    #: Measurements it took: more than 1 when other work on the machine disturbed a run.
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class SetupSummary:
    setup: str
    title: str
    rounds: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    rps_runs: list[float]
    p99_runs: list[float]
    #: CPU microseconds per request, per process (median over rounds).
    cpu_us_per_request: dict[str, float]
    machine_busy: float
    other_cpu_s_per_s: float
    errors: int
    #: Runs measured again because other work disturbed them.
    repeated: int = 0


@dataclass(frozen=True, slots=True)
class Ratio:
    setup: str
    baseline: str
    throughput: float
    p99: float
    #: Whether issue 7's targets apply (the sidecar), or the row is a reference.
    target: bool = True

    @property
    def throughput_ok(self) -> bool:
        return self.throughput >= THROUGHPUT_RATIO_MIN

    @property
    def p99_ok(self) -> bool:
        return self.p99 <= P99_RATIO_MAX


@dataclass(frozen=True, slots=True)
class MicroResult:
    name: str
    description: str
    iterations: int
    wall_us: float
    cpu_us: float
    #: tracemalloc: the most memory live at once during one decision, above the baseline.
    peak_bytes: int
    #: tracemalloc: memory still held after 1000 more decisions (a leak shows here).
    retained_bytes_per_1k: int


@dataclass(frozen=True, slots=True)
class ScaleResult:
    policies: int
    files: int
    yaml_bytes: int
    #: Reading and parsing the YAML files.
    read_s: float
    #: Schema validation + compile of every document + host index (PolicyStore.update).
    compile_s: float
    #: FileSource.load as the service runs it: read + compile + publish.
    load_s: float
    rss_before_mb: float
    rss_after_mb: float
    peak_rss_mb: float
    #: Snapshot.lookup of a host that exists / does not.
    lookup_hit_ns: float
    lookup_miss_ns: float
    #: A whole allowed decision (warm token cache) for one of the hosts.
    decide_us: float
    #: CPU time of the process during load_s (less disturbed by other work than wall time).
    load_cpu_s: float = 0.0
    #: PolicyStore.update with the documents as the Kubernetes source hands them over.
    k8s_compile_s: float = 0.0
    #: FileSource.load after one file changed (all files read again, one policy compiled).
    reload_s: float = 0.0
    #: Fresh processes per size: times are the best of them, RSS the largest.
    repeats: int = 1


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """One in-process rate-limit scenario (bench/ratelimit.py)."""

    name: str
    description: str
    decisions: int
    #: Checks in flight at once.
    concurrency: int
    wall_us: float
    #: The sidecar's (this process's) CPU per decision.
    cpu_us: float
    #: redis-server's CPU per decision (0 without Redis).
    redis_cpu_us: float
    #: Script calls Redis counted per decision (1 with Redis: proof the checks went there).
    redis_calls_per_decision: float


@dataclass(frozen=True, slots=True)
class ProfileResult:
    setup: str
    seconds: float
    samples: int
    #: Samples of threads doing work; the shares below are of these.
    busy_samples: int
    flamegraph: str
    collapsed: str
    #: (category, share of samples): see profile.CATEGORIES.
    breakdown: list[tuple[str, float]]
    #: (function, share of samples) with the most samples on top of the stack.
    top_self: list[tuple[str, float]]
    #: (authz function, share of samples) anywhere on the stack.
    top_inclusive: list[tuple[str, float]]


@dataclass
class Results:
    started: str
    command: str
    machine: dict[str, str]
    config: dict[str, Any]
    setups: list[SetupSummary] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    probes: dict[str, list[str]] = field(default_factory=dict)
    micro: list[MicroResult] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    profile: ProfileResult | None = None
    elapsed_s: float = 0.0
    #: Rate limits, memory versus Redis: in-process scenarios, then the load test's setups.
    ratelimit: list[RateLimitResult] = field(default_factory=list)
    ratelimit_setups: list[SetupSummary] = field(default_factory=list)
    ratelimit_runs: list[RunRecord] = field(default_factory=list)
    ratelimit_probes: dict[str, list[str]] = field(default_factory=dict)

    def summary(self, setup: str) -> SetupSummary | None:
        return next((s for s in self.setups if s.setup == setup), None)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def _median(runs: Sequence[RunRecord], get: Callable[[RunRecord], float]) -> float:
    return float(statistics.median(get(r) for r in runs))


def _per_request(role: str) -> Callable[[RunRecord], float]:
    def get(run: RunRecord) -> float:
        return 1e6 * run.cpu_s.get(role, 0.0) / max(run.wrk.requests, 1)

    return get


def summarize(setup: str, title: str, runs: Sequence[RunRecord]) -> SetupSummary:
    if not runs:
        raise ValueError(f"no runs of {setup}")
    roles = sorted({role for r in runs for role in r.cpu_s})
    cpu = {role: _median(runs, _per_request(role)) for role in roles}
    return SetupSummary(
        setup=setup,
        title=title,
        rounds=len(runs),
        rps=_median(runs, lambda r: r.wrk.rps),
        p50_ms=_median(runs, lambda r: r.wrk.p50_ms),
        p99_ms=_median(runs, lambda r: r.wrk.p99_ms),
        p999_ms=_median(runs, lambda r: r.wrk.p999_ms),
        rps_runs=[r.wrk.rps for r in runs],
        p99_runs=[r.wrk.p99_ms for r in runs],
        cpu_us_per_request=cpu,
        machine_busy=_median(runs, lambda r: r.machine_busy),
        other_cpu_s_per_s=_median(runs, lambda r: r.other_cpu_s / r.wrk.duration_s),
        errors=sum(r.wrk.failed for r in runs),
        repeated=sum(r.attempts - 1 for r in runs),
    )


def ratio(setup: SetupSummary, baseline: SetupSummary, *, target: bool = True) -> Ratio:
    return Ratio(
        setup=setup.setup,
        baseline=baseline.setup,
        throughput=setup.rps / baseline.rps,
        p99=setup.p99_ms / baseline.p99_ms,
        target=target,
    )


def load_json(path: Path) -> Results:
    """Results back from results.json (to redraw the chart and rewrite the doc without a run)."""
    raw: dict[str, Any] = json.loads(path.read_text())
    profile = raw.get("profile")
    return Results(
        started=raw["started"],
        command=raw["command"],
        machine=raw["machine"],
        config=raw["config"],
        setups=[SetupSummary(**item) for item in raw["setups"]],
        ratios=[Ratio(**item) for item in raw["ratios"]],
        runs=[RunRecord(**{**item, "wrk": WrkResult(**item["wrk"])}) for item in raw["runs"]],
        probes=raw["probes"],
        micro=[MicroResult(**item) for item in raw["micro"]],
        scale=[ScaleResult(**item) for item in raw["scale"]],
        profile=ProfileResult(**profile) if profile else None,
        elapsed_s=raw["elapsed_s"],
        ratelimit=[RateLimitResult(**item) for item in raw.get("ratelimit", [])],
        ratelimit_setups=[SetupSummary(**item) for item in raw.get("ratelimit_setups", [])],
        ratelimit_runs=[
            RunRecord(**{**item, "wrk": WrkResult(**item["wrk"])})
            for item in raw.get("ratelimit_runs", [])
        ],
        ratelimit_probes=raw.get("ratelimit_probes", {}),
    )
