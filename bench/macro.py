"""The side-by-side load test: measured in interleaved rounds against the running stack.

Rounds alternate direction
(A B C D, then D C B A, ...): with interleaving, slow drift of the machine (thermal, a noisy
neighbour) spreads over all setups instead of landing on whichever ran last.

This machine is shared: before each run the harness waits (bounded) for other work to calm
down, and a run that other work disturbed anyway (see MacroConfig.noisy_cores) is measured
again, keeping the least disturbed attempt; how often that happened is in the results.

Each measured run is preceded by a short unmeasured warmup of the same setup, and is checked
after the fact: wrk must report no socket errors or non-2xx answers beyond 1 %, and Envoy's own
filter counter must show the filter under test let the requests through.
"""

from __future__ import annotations

import functools
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from bench import procs, profile
from bench.load import LoadSpec, run_wrk, wrk_command
from bench.material import Material
from bench.procs import BenchError
from bench.results import ProfileResult, RunRecord
from bench.setups import FILTER_COUNTER
from bench.stack import Running, Stack

#: More failed requests than this share of a run makes its numbers meaningless.
MAX_ERROR_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class MacroConfig:
    #: Seconds per measured run, and of the unmeasured warmup before it (0 = none).
    duration: int
    warmup: int
    rounds: int
    connections: int = 16
    threads: int = 2
    #: Worker threads of each gateway Envoy (and of the upstream Envoy).
    envoy_concurrency: int = 1
    #: taskset CPU list for wrk; None = not pinned.
    wrk_cpus: str | None = None
    #: Before each run, wait up to this long (s) for other work on the machine to calm down.
    quiet_wait: float = 20.0
    #: "Calm": the machine's busy CPU, with the benchmark idle, below this many cores.
    quiet_cores: float = 0.2
    #: A run during which other work took more than this many cores is "disturbed" (on a
    #: quiet machine it stays under 0.05: the kernel's loopback work is billed to our processes) ...
    noisy_cores: float = 0.2
    #: ... and measured again, at most this many times; the least disturbed attempt counts.
    retries: int = 1


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    current: Stack,
    running: Running,
    *,
    spec: LoadSpec,
    token: str,
    round_number: int,
    save_output: Callable[[str], None] | None = None,
) -> RunRecord:
    """One measured wrk run against one setup, with the CPU every process spent meanwhile."""
    parts = {"gateway": running.gateway, "upstream": current.upstream}
    if running.sidecar is not None:
        parts["sidecar"] = running.sidecar
    parts.update(running.extra)
    for proc in parts.values():
        if not proc.alive():
            raise BenchError(f"{proc.name} died:\n{proc.tail()}")
    counter = FILTER_COUNTER[running.setup.auth]
    counted_before = procs.envoy_counters(running.admin).get(counter, 0) if counter else 0
    cpu_before = {role: proc.cpu_seconds() for role, proc in parts.items()}
    wrk_before = _children_cpu()
    machine_before = psutil.cpu_times()
    result, output = run_wrk(running.listen, spec, token=token)
    machine_after = psutil.cpu_times()
    cpu = {role: proc.cpu_seconds() - cpu_before[role] for role, proc in parts.items()}
    cpu["wrk"] = _children_cpu() - wrk_before
    idle = (machine_after.idle - machine_before.idle) + (
        machine_after.iowait - machine_before.iowait
    )
    total = sum(machine_after) - sum(machine_before)
    if save_output is not None:
        save_output(output)
    if result.failed > MAX_ERROR_SHARE * max(result.requests, 1):
        raise BenchError(
            f"{running.setup.name}: {result.failed} of {result.requests} requests failed "
            f"({result.errors}); see wrk's output in the logs"
        )
    allowed: int | None = None
    if counter is not None:
        allowed = procs.envoy_counters(running.admin).get(counter, 0) - counted_before
        if allowed < result.requests:
            raise BenchError(
                f"{running.setup.name}: wrk completed {result.requests} requests but {counter} "
                f"grew by {allowed} only: requests bypassed the filter under test"
            )
    return RunRecord(
        setup=running.setup.name,
        round=round_number,
        wrk=result,
        cpu_s=cpu,
        machine_busy=1.0 - idle / total if total > 0 else 0.0,
        other_cpu_s=max(total - idle - sum(cpu.values()), 0.0),
        filter_allowed=allowed,
    )


def busy_cores(window: float = 1.0) -> float:
    """Cores' worth of busy CPU on the whole machine over `window` seconds."""
    before = psutil.cpu_times()
    time.sleep(window)
    after = psutil.cpu_times()
    total = sum(after) - sum(before)
    idle = (after.idle - before.idle) + (after.iowait - before.iowait)
    return (1 - idle / total) * (psutil.cpu_count() or 1) if total > 0 else 0.0


def wait_for_quiet(config: MacroConfig) -> tuple[float, float]:
    """Wait (bounded) until the machine is calm while the benchmark is idle.

    On a shared machine, other programs' bursts land in whichever run they overlap; waiting
    them out costs a little time and removes the worst outliers. Returns (waited s, busy cores).
    """
    began = time.monotonic()
    busy = busy_cores()
    while busy > config.quiet_cores and time.monotonic() - began < config.quiet_wait:
        busy = busy_cores()
    return time.monotonic() - began, busy


def schedule(names: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, setup) in the order they run: A B C D, D C B A, A B C D, ..."""
    order: list[tuple[int, str]] = []
    for number in range(1, rounds + 1):
        sequence = names if number % 2 else list(reversed(names))
        order.extend((number, name) for name in sequence)
    return order


def run_rounds(
    current: Stack,
    *,
    material: Material,
    config: MacroConfig,
    logs: Path,
    progress: Callable[[str], None],
) -> list[RunRecord]:
    spec = LoadSpec(
        duration=config.duration,
        connections=config.connections,
        threads=config.threads,
        cpus=config.wrk_cpus,
    )
    warmup = LoadSpec(
        duration=config.warmup,
        connections=config.connections,
        threads=config.threads,
        cpus=config.wrk_cpus,
    )
    records: list[RunRecord] = []
    for number, name in schedule([r.setup.name for r in current.setups], config.rounds):
        running = current.get(name)
        best: RunRecord | None = None
        for attempt in range(1, config.retries + 2):
            record = _attempt(
                current,
                running,
                material=material,
                config=config,
                specs=(warmup, spec),
                log=logs / f"wrk-{name}-round{number}-try{attempt}.txt",
                round_number=number,
                progress=progress,
            )
            other = record.other_cpu_s / record.wrk.duration_s
            progress(
                f"round {number} {name:<16} {record.wrk.rps:7.0f} req/s"
                f"  p50 {record.wrk.p50_ms:6.2f} ms  p99 {record.wrk.p99_ms:6.2f} ms"
                f"  p99.9 {record.wrk.p999_ms:6.2f} ms  other CPU {other:4.2f} cores"
            )
            if best is None or other < best.other_cpu_s / best.wrk.duration_s:
                best = record
            if other <= config.noisy_cores:
                break
            if attempt <= config.retries:
                progress(f"  disturbed by other work ({other:.2f} cores); measuring again")
        assert best is not None
        records.append(replace(best, attempts=attempt))
    return records


def _attempt(
    current: Stack,
    running: Running,
    *,
    material: Material,
    config: MacroConfig,
    specs: tuple[LoadSpec, LoadSpec],
    log: Path,
    round_number: int,
    progress: Callable[[str], None],
) -> RunRecord:
    """Wait for a calm machine, warm up, measure once."""
    warmup, spec = specs
    if config.quiet_wait > 0:
        waited, busy = wait_for_quiet(config)
        if busy > config.quiet_cores:
            progress(
                f"machine still busy ({busy:.2f} cores) after {waited:.0f} s; measuring anyway"
            )
    if config.warmup > 0:
        run_wrk(running.listen, warmup, token=material.token)
    return measure(
        current,
        running,
        spec=spec,
        token=material.token,
        round_number=round_number,
        save_output=functools.partial(_save, log),
    )


def _save(path: Path, text: str) -> None:
    path.write_text(text)


def profile_run(
    current: Stack,
    *,
    setup: str,
    material: Material,
    config: MacroConfig,
    seconds: float,
    out: Path,
) -> ProfileResult:
    """Keep `setup` under wrk's load while py-spy records its sidecar (not a measured run)."""
    running = current.get(setup)
    if running.sidecar is None:
        raise BenchError(f"{setup} has no sidecar to profile")
    spec = LoadSpec(
        duration=int(2 * seconds) + 3,
        connections=config.connections,
        threads=config.threads,
        cpus=config.wrk_cpus,
    )
    load = subprocess.Popen(
        wrk_command(running.listen, spec, token=material.token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        return profile.record(running.sidecar.pid, setup=setup, seconds=seconds, out=out)
    finally:
        load.terminate()
        load.wait()
