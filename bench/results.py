"""The numbers of one `make bench` (results.json is `asdict(Results)`); what each field means is
the column it fills in docs/performance.md. Rounds combine by the median, per metric."""

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
    p99_ms: float
    p999_ms: float
    errors: dict[str, int] = field(default_factory=dict)  # socket errors; status: non-2xx/3xx

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True)
class RunRecord:
    setup: str
    round: int
    wrk: WrkResult
    cpu_s: dict[str, float]  # CPU seconds per process: gateway, upstream, sidecar, wrk, ...
    machine_busy: float
    other_cpu_s: float  # busy CPU not charged to the processes above (others, kernel)
    attempts: int = 1  # more than 1: other work disturbed a run and it was measured again


@dataclass(frozen=True, slots=True)
class SetupSummary:
    setup: str
    title: str
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    rps_runs: list[float]
    cpu_us_per_request: dict[str, float]
    machine_busy: float
    other_cpu_s_per_s: float
    errors: int
    repeated: int


@dataclass(frozen=True, slots=True)
class LoadResult:
    setups: list[SetupSummary]
    runs: list[RunRecord]
    probes: dict[str, list[str]]

    def get(self, setup: str) -> SetupSummary | None:
        return next((s for s in self.setups if s.setup == setup), None)


@dataclass(frozen=True, slots=True)
class InProcess:
    name: str
    description: str
    wall_us: float
    cpu_us: float
    peak_bytes: int = 0  # tracemalloc: most memory live during one decision
    retained_bytes_per_1k: int = 0  # still held after 1000 more decisions
    redis_cpu_us: float = 0.0
    redis_calls_per_decision: float = 0.0


@dataclass(frozen=True, slots=True)
class ScaleResult:
    policies: int
    files: int
    yaml_bytes: int
    repeats: int  # processes: seconds are the best of them, megabytes the largest
    load_s: float
    load_cpu_s: float
    ready_s: float  # process start to the first snapshot, less the same for one policy
    ready_cpu_s: float
    read_s: float
    compile_s: float
    k8s_compile_s: float
    reload_s: float
    rss_before_mb: float
    rss_after_mb: float
    lookup_hit_ns: float
    lookup_miss_ns: float
    decide_us: float


@dataclass(frozen=True, slots=True)
class ProfileResult:
    setup: str
    seconds: float
    samples: int
    busy_samples: int  # samples of threads doing work; the shares are of these
    flamegraph: str
    breakdown: list[tuple[str, float]]
    top_self: list[tuple[str, float]]
    top_inclusive: list[tuple[str, float]]


@dataclass(frozen=True, slots=True)
class HostileResult:
    attack: str
    engine: str
    checks: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_growth_mb: float
    rss_kept_mb: float
    cut_off: bool  # the server closed every attacking connection (or reset its streams)
    goaway: list[int]
    frames_sent: int


@dataclass
class Results:
    started: str
    command: str
    machine: dict[str, str]
    config: dict[str, Any]
    elapsed_s: float = 0.0
    load: LoadResult | None = None
    profile: ProfileResult | None = None
    micro: list[InProcess] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    ratelimit: list[InProcess] = field(default_factory=list)
    ratelimit_load: LoadResult | None = None
    hostile: list[HostileResult] = field(default_factory=list)
    tls_load: LoadResult | None = None
    bruteforce: list[InProcess] = field(default_factory=list)

    def summary(self, setup: str) -> SetupSummary | None:
        return self.load.get(setup) if self.load is not None else None

    def micro_result(self, name: str) -> InProcess | None:
        return next((m for m in self.micro if m.name == name), None)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


def summarize(setup: str, title: str, runs: Sequence[RunRecord]) -> SetupSummary:
    def median(get: Callable[[RunRecord], float]) -> float:
        return float(statistics.median(get(r) for r in runs))

    def per_request(role: str) -> float:
        return median(lambda r: 1e6 * r.cpu_s.get(role, 0.0) / r.wrk.requests)

    return SetupSummary(
        setup,
        title,
        rps=median(lambda r: r.wrk.rps),
        p50_ms=median(lambda r: r.wrk.p50_ms),
        p99_ms=median(lambda r: r.wrk.p99_ms),
        p999_ms=median(lambda r: r.wrk.p999_ms),
        rps_runs=[r.wrk.rps for r in runs],
        cpu_us_per_request={role: per_request(role) for role in sorted(runs[0].cpu_s)},
        machine_busy=median(lambda r: r.machine_busy),
        other_cpu_s_per_s=median(lambda r: r.other_cpu_s / r.wrk.duration_s),
        errors=sum(r.wrk.failed for r in runs),
        repeated=sum(r.attempts - 1 for r in runs),
    )
