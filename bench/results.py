"""The numbers of one `make bench`, and their aggregation across rounds.

Plain dataclasses: bench/out/results.json is `dataclasses.asdict` of `Results`. Rounds are
combined by the median, per metric: with interleaved rounds a slow moment of the machine lands
in one round of every setup, and the median keeps it from deciding a number.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    #: connect/read/write/timeout socket errors and `status` = non-2xx/3xx answers.
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One measured wrk run of one setup."""

    setup: str
    round: int
    wrk: WrkResult
    #: CPU seconds each process spent during the run: gateway, upstream, sidecar, wrk, ...
    cpu_s: dict[str, float]
    #: Share of the machine's CPU time that was busy during the run (0..1).
    machine_busy: float
    #: Busy CPU seconds not spent by the processes above: other programs on the machine, and
    #: kernel work (e.g. loopback softirq) not charged to a process.
    other_cpu_s: float
    #: Requests Envoy's filter counter says it let through (None without a filter).
    filter_allowed: int | None
    #: Measurements it took: more than 1 when other work on the machine disturbed a run.
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class SetupSummary:
    """A setup's runs: medians over rounds (CPU in µs per request, per process)."""

    setup: str
    title: str
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    rps_runs: list[float]
    p99_runs: list[float]
    cpu_us_per_request: dict[str, float]
    machine_busy: float
    other_cpu_s_per_s: float
    errors: int
    #: Runs measured again because other work disturbed them.
    repeated: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One load test: a summary per setup (in the order they ran), every run, the probes."""

    setups: list[SetupSummary]
    runs: list[RunRecord]
    probes: dict[str, list[str]]

    def get(self, setup: str) -> SetupSummary | None:
        return next((s for s in self.setups if s.setup == setup), None)


@dataclass(frozen=True, slots=True)
class InProcess:
    """One in-process scenario: per decision, the best of its repeats (bench/micro.py)."""

    name: str
    description: str
    decisions: int
    wall_us: float
    cpu_us: float
    #: tracemalloc: the most memory live at once during one decision, above the baseline, and
    #: what is still held after 1000 more (a leak shows there).
    peak_bytes: int = 0
    retained_bytes_per_1k: int = 0
    #: Decisions in flight at once.
    concurrency: int = 1
    #: redis-server's CPU per decision, and the script calls it counted per decision.
    redis_cpu_us: float = 0.0
    redis_calls_per_decision: float = 0.0


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """Loading `policies` generated policies in a fresh process (bench/scale.py): seconds are
    the best of `repeats` processes, megabytes the largest."""

    policies: int
    files: int
    yaml_bytes: int
    repeats: int
    #: FileSource.load as the service runs it (read + compile + publish), wall and CPU.
    load_s: float
    load_cpu_s: float
    #: From starting the process to the first snapshot, less the same for one policy.
    ready_s: float
    ready_cpu_s: float
    #: The split of load_s: reading and parsing the YAML; validating, compiling and indexing.
    read_s: float
    compile_s: float
    #: PolicyStore.update with the documents as the Kubernetes source hands them over.
    k8s_compile_s: float
    #: FileSource.load after one file changed (all files read again, one policy compiled).
    reload_s: float
    rss_before_mb: float
    rss_after_mb: float
    peak_rss_mb: float
    #: Snapshot.lookup of a host that exists / does not.
    lookup_hit_ns: float
    lookup_miss_ns: float
    #: A whole allowed decision (warm token cache) for one of the hosts.
    decide_us: float


@dataclass(frozen=True, slots=True)
class ProfileResult:
    setup: str
    seconds: float
    samples: int
    #: Samples of threads doing work; the shares are of these.
    busy_samples: int
    flamegraph: str
    #: (category, share): see profile.CATEGORIES.
    breakdown: list[tuple[str, float]]
    #: (function, share) with the most samples on top of the stack.
    top_self: list[tuple[str, float]]
    #: (authz function, share) anywhere on the stack.
    top_inclusive: list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class HostileResult:
    """One attack on one engine (bench/hostile.py), with a legitimate client beside it."""

    attack: str
    engine: str
    seconds: float
    #: The legitimate client's checks during the attack, those that failed, their latency.
    checks: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: The sidecar's RSS above its level before the attack: at its peak, and after the attack.
    rss_growth_mb: float
    rss_kept_mb: float
    #: The server closed every attacking connection (or reset every stalled stream).
    cut_off: bool
    #: GOAWAY error codes the attacker read.
    goaway: list[int]
    frames_sent: int


@dataclass
class Results:
    """Everything one run measured; a part that did not run leaves its fields empty."""

    started: str
    command: str
    machine: dict[str, str]
    config: dict[str, Any]
    elapsed_s: float = 0.0
    #: Envoy alone, native jwt_authn and the sidecar side by side (bench/setups.py).
    load: LoadResult | None = None
    profile: ProfileResult | None = None
    micro: list[InProcess] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    #: Rate limits, memory versus Redis: in-process, then a load test of their own.
    ratelimit: list[InProcess] = field(default_factory=list)
    ratelimit_load: LoadResult | None = None
    #: The check port under attack, per engine (bench/hostile.py).
    hostile: list[HostileResult] = field(default_factory=list)
    #: The sidecar called over plaintext, TLS and mutual TLS (bench/tls.py).
    tls_load: LoadResult | None = None
    #: Brute-force protection in-process: allowed with and without it, blocked, failing.
    bruteforce: list[InProcess] = field(default_factory=list)

    def summary(self, setup: str) -> SetupSummary | None:
        return self.load.get(setup) if self.load is not None else None

    def micro_result(self, name: str) -> InProcess | None:
        return next((m for m in self.micro if m.name == name), None)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def summarize(setup: str, title: str, runs: Sequence[RunRecord]) -> SetupSummary:
    if not runs:
        raise ValueError(f"no runs of {setup}")

    def median(get: Callable[[RunRecord], float]) -> float:
        return float(statistics.median(get(r) for r in runs))

    def per_request(role: str) -> float:
        return median(lambda r: 1e6 * r.cpu_s.get(role, 0.0) / max(r.wrk.requests, 1))

    return SetupSummary(
        setup=setup,
        title=title,
        rps=median(lambda r: r.wrk.rps),
        p50_ms=median(lambda r: r.wrk.p50_ms),
        p99_ms=median(lambda r: r.wrk.p99_ms),
        p999_ms=median(lambda r: r.wrk.p999_ms),
        rps_runs=[r.wrk.rps for r in runs],
        p99_runs=[r.wrk.p99_ms for r in runs],
        cpu_us_per_request={role: per_request(role) for role in sorted(runs[0].cpu_s)},
        machine_busy=median(lambda r: r.machine_busy),
        other_cpu_s_per_s=median(lambda r: r.other_cpu_s / r.wrk.duration_s),
        errors=sum(r.wrk.failed for r in runs),
        repeated=sum(r.attempts - 1 for r in runs),
    )
