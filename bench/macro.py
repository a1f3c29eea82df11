"""The load test: wrk against each running setup in interleaved rounds, with every process's CPU.

How runs are scheduled, retried and checked: docs/performance.md. p99.9 and the error counts come
from a Lua done() hook (bench/wrk_report.lua) printing a `BENCH_RESULT key=value ...` line.
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from authz.server.listen import ListenAddress
from bench import procs
from bench.material import Material
from bench.procs import BenchError, Proc
from bench.results import LoadResult, RunRecord, WrkResult, summarize
from bench.setups import FILTER_COUNTER, Setup
from bench.stack import PATH, Running, Stack, probe_all, stack

SCRIPT = Path(__file__).with_name("wrk_report.lua")
MAX_ERROR_SHARE = 0.01  # more failed requests than this share of a run make it meaningless.


@dataclass(frozen=True, slots=True)
class Config:
    """A run's settings: the load test's, then the in-process, scale and profile parts'."""

    duration: int  # whole seconds per measured run (wrk takes no fractions)
    warmup: int  # whole seconds of the unmeasured run before it
    rounds: int
    connections: int = 16
    threads: int = 2
    envoy_concurrency: int = 1  # worker threads of each Envoy
    wrk_cpus: str | None = None  # taskset CPU list for wrk; None = not pinned
    #: Before each run, wait up to quiet_wait s for the machine's busy CPU to fall below
    #: quiet_cores; a run during which other work took more than that is measured again, at
    #: most `retries` times (the kernel's loopback work is billed to our processes, so a quiet
    #: machine stays well under).
    quiet_wait: float = 20.0
    quiet_cores: float = 0.2
    retries: int = 1
    micro_iterations: int = 10_000  # decisions per timed loop of an in-process scenario
    micro_repeats: int = 7
    scale_sizes: tuple[int, ...] = (1_000, 10_000)
    profile_seconds: float = 5.0  # seconds of py-spy recording on the sidecar; 0 = no profile.
    quick: bool = False  # a smoke run: it leaves docs/ alone.


def parse_wrk(output: str) -> WrkResult:
    match = re.search(r"^BENCH_RESULT (.*)$", output, re.MULTILINE)
    if match is None:
        raise BenchError(f"no BENCH_RESULT line in wrk's output:\n{output[-2000:]}")
    values = {k: float(v) for k, _, v in (item.partition("=") for item in match[1].split())}
    duration, requests = values["duration_us"] / 1e6, int(values["requests"])
    ms = {f"{k}_ms": values[f"{k}_us"] / 1000 for k in ("p50", "p99", "p999")}
    errors = {k: int(values[k]) for k in ("connect", "read", "write", "timeout", "status")}
    return WrkResult(requests, duration, rps=requests / duration, errors=errors, **ms)


def wrk_command(
    address: ListenAddress, config: Config, *, seconds: int, token: str | None
) -> list[str]:
    command = [procs.find_binary("wrk"), f"-t{config.threads}", f"-c{config.connections}"]
    command += [f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(SCRIPT)]
    command += ["-H", f"Authorization: Bearer {token}"] if token is not None else []
    command.append(f"http://{address.host}:{address.port}{PATH}")
    return ["taskset", "-c", config.wrk_cpus, *command] if config.wrk_cpus else command


def run_wrk(
    address: ListenAddress, config: Config, *, seconds: int, token: str | None
) -> tuple[WrkResult, str]:
    """One wrk run; returns the parsed result and wrk's output (kept in the run's logs)."""
    command = wrk_command(address, config, seconds=seconds, token=token)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-1000:]
        raise BenchError(f"wrk exited with {done.returncode}: {output}")
    return parse_wrk(done.stdout), done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    current: Stack, running: Running, *, config: Config, token: str, round_number: int = 1
) -> tuple[RunRecord, str]:
    """One measured wrk run against one setup, with the CPU every process spent meanwhile."""
    parts: dict[str, Proc] = {"gateway": running.gateway, "upstream": current.upstream}
    parts |= running.extra | ({"sidecar": running.sidecar} if running.sidecar else {})
    for proc in parts.values():
        if not proc.alive():
            raise BenchError(f"{proc.name} died:\n{proc.tail()}")
    name, counter = running.setup.name, FILTER_COUNTER[running.setup.auth]
    counted = procs.envoy_counters(running.admin).get(counter, 0) if counter else 0
    cpu_before = {role: proc.cpu_seconds() for role, proc in parts.items()}
    wrk_before, machine_before = _children_cpu(), psutil.cpu_times()
    result, output = run_wrk(running.listen, config, seconds=config.duration, token=token)
    machine = psutil.cpu_times()  # busy and total CPU seconds of the whole machine meanwhile
    total = sum(machine) - sum(machine_before)
    busy = total - (machine.idle - machine_before.idle) - (machine.iowait - machine_before.iowait)
    cpu = {role: proc.cpu_seconds() - cpu_before[role] for role, proc in parts.items()}
    cpu["wrk"] = _children_cpu() - wrk_before
    if result.failed > MAX_ERROR_SHARE * result.requests:
        raise BenchError(
            f"{name}: {result.failed} of {result.requests} requests failed "
            f"({result.errors}); see wrk's output in the logs"
        )
    if counter is not None:
        allowed = procs.envoy_counters(running.admin).get(counter, 0) - counted
        if allowed < result.requests:
            raise BenchError(
                f"{name}: wrk completed {result.requests} requests but {counter} "
                f"grew by {allowed} only: requests bypassed the filter under test"
            )
    other = max(busy - sum(cpu.values()), 0.0)
    return RunRecord(name, round_number, result, cpu, busy / total, other), output


def busy_cores(window: float = 1.0) -> float:
    """Cores' worth of busy CPU on the whole machine over `window` seconds."""
    return psutil.cpu_percent(interval=window) / 100 * (psutil.cpu_count() or 1)


def schedule(names: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, setup) in the order they run: A B C D, D C B A, A B C D, ..."""
    return [(n, name) for n in range(1, rounds + 1) for name in names[:: 1 if n % 2 else -1]]


def run_rounds(
    current: Stack, *, token: str, config: Config, logs: Path, say: Callable[[str], None]
) -> list[RunRecord]:
    records: list[RunRecord] = []
    for number, name in schedule([r.setup.name for r in current.setups], config.rounds):
        running, attempts = current.get(name), list[RunRecord]()
        while len(attempts) <= config.retries:
            began = time.monotonic()
            while config.quiet_wait > 0 and (busy := busy_cores()) > config.quiet_cores:
                if time.monotonic() - began >= config.quiet_wait:
                    say(f"machine still busy ({busy:.2f} cores); measuring anyway")
                    break
            if config.warmup > 0:
                run_wrk(running.listen, config, seconds=config.warmup, token=token)
            record, output = measure(
                current, running, config=config, token=token, round_number=number
            )
            attempts.append(record)
            (logs / f"wrk-{name}-round{number}-try{len(attempts)}.txt").write_text(output)
            other, wrk = record.other_cpu_s / record.wrk.duration_s, record.wrk
            say(
                f"round {number} {name:<16} {wrk.rps:7.0f} req/s  p50 {wrk.p50_ms:6.2f} ms"
                f"  p99 {wrk.p99_ms:6.2f} ms  p99.9 {wrk.p999_ms:6.2f} ms"
                f"  other CPU {other:4.2f} cores"
            )
            if other <= config.quiet_cores:
                break
            if len(attempts) <= config.retries:
                say(f"  disturbed by other work ({other:.2f} cores); measuring again")
        best = min(attempts, key=lambda r: r.other_cpu_s / r.wrk.duration_s)
        records.append(replace(best, attempts=len(attempts)))
    return records


def load_test(
    setups: tuple[Setup, ...],
    *,
    material: Material,
    config: Config,
    logs: Path,
    say: Callable[[str], None],
    redis: tuple[Proc, int] | None = None,
    then: Callable[[Stack], None] = lambda _stack: None,
) -> LoadResult:
    """Start `setups`, probe each, measure them all in interleaved rounds, then call `then`
    while they still run (the profile)."""
    say(f"starting {', '.join(s.name for s in setups)} (logs: {logs})")
    concurrency = config.envoy_concurrency
    with stack(
        setups, material=material, envoy_concurrency=concurrency, logs=logs, redis=redis
    ) as current:
        probes = probe_all(current, material)
        for name, checks in probes.items():
            say(f"probe {name}: {', '.join(checks)}")
        runs = run_rounds(current, token=material.token, config=config, logs=logs, say=say)
        then(current)
    summaries = [
        summarize(s.name, s.title, [run for run in runs if run.setup == s.name]) for s in setups
    ]
    return LoadResult(setups=summaries, runs=runs, probes=probes)
