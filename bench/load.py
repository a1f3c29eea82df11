"""Generate load with wrk and read its report.

wrk is a closed-loop generator: 16 connections, each sending its next request when the previous
answer arrives, for a fixed duration. `--latency` prints p50/75/90/99 only, so a Lua done()
hook (bench/wrk_report.lua) adds one `BENCH_RESULT key=value ...` line with p99.9 and the error
counts; that line is what gets parsed. Requests/sec from wrk's text report is parsed too, as a
cross-check of the line.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from authz.server.listen import ListenAddress
from bench.procs import BenchError, find_binary, pinned

SCRIPT = Path(__file__).with_name("wrk_report.lua")
_RESULT = re.compile(r"^BENCH_RESULT (.*)$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    #: Whole seconds: wrk takes no fractions.
    duration: int
    connections: int = 16
    threads: int = 2
    #: CPU list for taskset, e.g. "1"; None = not pinned.
    cpus: str | None = None


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


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's output; raises BenchError when the BENCH_RESULT line is missing."""
    match = _RESULT.search(output)
    if match is None:
        raise BenchError(f"no BENCH_RESULT line in wrk's output:\n{output[-2000:]}")
    values: dict[str, float] = {}
    for item in match.group(1).split():
        key, _, raw = item.partition("=")
        values[key] = float(raw)
    duration = values["duration_us"] / 1e6
    requests = int(values["requests"])
    rps = requests / duration if duration > 0 else 0.0
    text_rps = _RPS.search(output)
    if text_rps is not None and rps > 0 and abs(float(text_rps.group(1)) - rps) > 0.01 * rps:
        raise BenchError(f"wrk reports {text_rps.group(1)} req/s, its counts say {rps:.2f}")
    return WrkResult(
        requests=requests,
        duration_s=duration,
        rps=rps,
        p50_ms=values["p50_us"] / 1000,
        p90_ms=values["p90_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        p999_ms=values["p999_us"] / 1000,
        max_ms=values["max_us"] / 1000,
        mean_ms=values["mean_us"] / 1000,
        errors={k: int(values[k]) for k in ("connect", "read", "write", "timeout", "status")},
    )


def wrk_command(
    address: ListenAddress, spec: LoadSpec, *, token: str | None, path: str = "/bench/items/42"
) -> list[str]:
    command = [
        find_binary("wrk"),
        f"-t{spec.threads}",
        f"-c{spec.connections}",
        f"-d{max(int(spec.duration), 1)}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(SCRIPT),
    ]
    if token is not None:
        command += ["-H", f"Authorization: Bearer {token}"]
    command.append(f"http://{address.host}:{address.port}{path}")
    return pinned(command, spec.cpus)


def run_wrk(address: ListenAddress, spec: LoadSpec, *, token: str | None) -> tuple[WrkResult, str]:
    """One wrk run; returns the parsed result and wrk's full output (kept in the run's logs)."""
    command = wrk_command(address, spec, token=token)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=spec.duration + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(
            f"wrk exited with {done.returncode}: {(done.stderr or done.stdout).strip()[-1000:]}"
        )
    return parse_wrk(done.stdout), done.stdout
