"""Start real servers for tests: each in its own process, on a free port, loudly failing.

Every process writes its output to a log file under the test's tmp_path, which the tests read
(e.g. to prove no token ever reaches a log) and which is printed when a process fails to start.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tests.support.wait import TIMEOUT, wait_for

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(PYTHON).parent


_LIVE: list[Proc] = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, so no server outlives a crashed run."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@atexit.register
def _stop_leftovers() -> None:
    """A test that failed before its cleanup leaves its servers to the end of the session."""
    for proc in _LIVE:
        if proc.alive():
            proc.popen.kill()


def run_python(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python ARGV` in the repository, to the end: its exit code and output, as text."""
    return subprocess.run(
        [PYTHON, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process with its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=full_env,
            preexec_fn=_die_with_parent,
        )
        _LIVE.append(self)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def fail(self, message: str) -> NoReturn:
        raise RuntimeError(
            f"{self.name}: {message}\n--- {self.log_path} ---\n{self.output()[-4000:]}"
        )

    def exited(self) -> str | None:
        """Why waiting for this process is pointless (it exited), or None while it runs."""
        return None if self.alive() else f"{self.name} exited with code {self.popen.returncode}"

    def wait_http(self, url: str, *, timeout: float = TIMEOUT, status: int = 200) -> None:
        def answers() -> bool:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == status)

        try:
            wait_for(
                answers,
                what=f"{url} answering {status}",
                within=timeout,
                ignore=(OSError,),
                unless=self.exited,
            )
        except AssertionError as exc:
            self.fail(str(exc))

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (kills after `timeout`)."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self._log.close()
        return code

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()


def start_sidecar(
    tmp_path: Path,
    policies: Sequence[Path],
    *,
    grpc_listen: str | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    name: str = "authz",
    wait: bool = True,
) -> tuple[Proc, str, int]:
    """Start `authz serve`; returns (process, gRPC listen address, HTTP port)."""
    http_port = free_port()
    grpc = grpc_listen or f"127.0.0.1:{free_port()}"
    argv = [
        PYTHON,
        "-m",
        "authz",
        "serve",
        "--grpc-listen",
        grpc,
        "--http-listen",
        f"127.0.0.1:{http_port}",
    ]
    for path in policies:
        argv += ["--policies", str(path)]
    if "--admin-listen" not in extra:  # many sidecars run at once: none may take the default port
        argv += ["--admin-listen", "127.0.0.1:0"]
    proc = Proc(name, [*argv, *extra], log=tmp_path / f"{name}.log", env=env)
    if wait:
        proc.wait_http(f"http://127.0.0.1:{http_port}/readyz")
    return proc, grpc, http_port


def start_http_dir(tmp_path: Path, directory: Path, *, name: str) -> tuple[Proc, int]:
    """A static file server (python -m http.server) whose log lists every request it received."""
    port = free_port()
    proc = Proc(
        name,
        [
            PYTHON,
            "-u",
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        log=tmp_path / f"{name}.log",
    )
    try:
        wait_for(
            lambda: listening(port),
            what=f"{name} listening on {port}",
            unless=proc.exited,
        )
    except AssertionError as exc:
        proc.fail(str(exc))
    return proc, port


def listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def start_echo(tmp_path: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(
        "echo",
        [PYTHON, "-m", "authz.devtools.echo", "--port", str(port)],
        log=tmp_path / "echo.log",
    )
    proc.wait_http(f"http://127.0.0.1:{port}/ready")
    return proc, port
