"""Start, stop, kill and restart the fake API server process, and drive its control API.

The server runs in a child process so that "the API server went away" is real: the socket closes,
connections are refused until it is back, and it comes back on the same port with the same objects
and resourceVersion (from its state file) but an empty watch history. Control calls are plain
blocking HTTP (urllib) so that sync and async tests can both use them without a client library.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from tests.support import tiers
from tests.support.wait import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_REPO = Path(__file__).resolve().parents[3]
TOKEN = "fakekube-token"


@dataclass(frozen=True)
class LoggedRequest:
    """One API request the server received (control requests are not logged)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    time: float
    status: int | None

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch") in ("true", "1")


class FakeKubeError(RuntimeError):
    """The fake server could not be started or did not answer a control request."""


class FakeKube:
    """A running fake API server. Use ``FakeKube.start(tmp_path)`` (also a context manager)."""

    def __init__(self, workdir: Path, *, args: list[str], startup_timeout: float) -> None:
        self.workdir = workdir
        self.state_file = workdir / "fakekube-state.json"
        self.kubeconfig_path = workdir / "kubeconfig.yaml"
        self._log_path = workdir / "fakekube-stderr.log"
        self._args = args
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        bookmark_interval: float = 1.0,
        validate: bool = True,
        history_limit: int = 1000,
        crds: Sequence[Path] = (),
        startup_timeout: float = 20.0,
    ) -> FakeKube:
        """Start a server with an empty store, wait until it answers, write its kubeconfig.

        ``crds`` replaces the default (deploy/crds/authz.dev_authpolicies.yaml) when given.
        Raises FakeKubeError, with the process's stderr, if it does not come up.
        """
        tiers.starting("the fake Kubernetes API server")
        workdir.mkdir(parents=True, exist_ok=True)
        args = [
            f"--bookmark-interval={bookmark_interval}",
            f"--history-limit={history_limit}",
            f"--token={TOKEN}",
        ]
        args += [f"--crd={path}" for path in crds]
        if not validate:
            args.append("--no-validate")
        kube = cls(workdir, args=args, startup_timeout=startup_timeout)
        kube.state_file.unlink(missing_ok=True)
        kube._spawn(port=0)
        kube._write_kubeconfig()
        return kube

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- process lifecycle -------------------------------------------------------------------

    def _spawn(self, *, port: int) -> None:
        cmd = [sys.executable, "-m", "tests.support.fakekube", f"--port={port}"]
        cmd += [f"--state-file={self.state_file}", "--exit-with-stdin", *self._args]
        path = [str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        with self._log_path.open("ab") as stderr:
            # stdin stays open for the server's life: if this process dies, the server sees EOF
            # and exits, so a crashed test run leaves no server behind.
            proc = subprocess.Popen(
                cmd,
                cwd=_REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.PIPE,
            )
        self._proc = proc
        assert proc.stdout is not None
        line = self._read_line(proc, deadline=time.monotonic() + self._startup_timeout)
        proc.stdout.close()
        try:
            self.port = int(line)
        except ValueError:
            self._fail(f"unexpected first line {line!r}")
        self._wait_healthy()

    def _read_line(self, proc: subprocess.Popen[bytes], *, deadline: float) -> str:
        assert proc.stdout is not None
        fd, buf = proc.stdout.fileno(), b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail("timed out waiting for the port")
            ready, _, _ = select.select([fd], [], [], min(remaining, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._fail("exited before announcing its port")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode().strip()

    def _wait_healthy(self) -> None:
        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                return bool(resp.status == 200)

        try:
            wait_for(
                healthy,
                what="/healthz",
                within=self._startup_timeout,
                ignore=(OSError,),
                unless=lambda: None if self.running else "exited",
            )
        except AssertionError as exc:
            self._fail(f"did not answer: {exc}")

    def _fail(self, why: str) -> NoReturn:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._release_stdin()
        code = proc.returncode if proc is not None else None
        stderr = self._log_path.read_text(errors="replace") if self._log_path.exists() else ""
        raise FakeKubeError(f"fakekube {why} (exit code {code}); stderr:\n{stderr[-4000:]}")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): open watches end cleanly, then the socket closes."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._release_stdin()

    def kill(self) -> None:
        """Crash (SIGKILL): connections break mid-stream; nothing written is lost."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._release_stdin()

    def _release_stdin(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port with the same state, history empty."""
        if kill:
            self.kill()
        else:
            self.stop()
        deadline = time.monotonic() + self._startup_timeout
        while True:
            try:
                self._spawn(port=self.port)
                return
            except FakeKubeError:
                # The old socket can linger for a moment; retry until the port is free.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> FakeKube:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def api_client(self) -> ApiClient:
        """A kubernetes ApiClient configured from ``kubeconfig_path`` (no global state touched)."""
        from kubernetes import config

        path = str(self.kubeconfig_path)
        client: ApiClient = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        return client

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": "fakekube",
                    "context": {"cluster": "fakekube", "user": "fakekube", "namespace": "default"},
                }
            ],
            "current-context": "fakekube",
        }
        # JSON is YAML, and keeps this module free of a YAML dependency.
        self.kubeconfig_path.write_text(json.dumps(config, indent=2))

    # -- control API ---------------------------------------------------------------------------

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}/_fake/{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            raise FakeKubeError(f"control request {method} {path} failed: {exc}") from exc

    def resource_version(self) -> int:
        """The store's current global resourceVersion."""
        return int(self._control("GET", "state")["resourceVersion"])

    def compact(self, resource: str | None = None) -> int:
        """Forget the change history: watches and continues from older revisions get 410."""
        return int(self._control("POST", "compact", {"resource": resource})["resourceVersion"])

    def expire_watches(self) -> int:
        """Send ERROR 410 Expired on every open watch and end it; returns how many."""
        return int(self._control("POST", "watches/expire")["affected"])

    def drop_watches(self) -> int:
        """Close every open watch's connection mid-stream (no terminating chunk)."""
        return int(self._control("POST", "watches/drop")["affected"])

    def stall_watches(self) -> int:
        """Send nothing (not even bookmarks) on the open watches until ``release_watches``."""
        return int(self._control("POST", "watches/stall")["affected"])

    def release_watches(self) -> int:
        """Un-stall; events that arrived meanwhile are delivered."""
        return int(self._control("POST", "watches/release")["affected"])

    def advance_clock(self, seconds: float) -> None:
        """Move the server's clock forward (the timestamps it sets, e.g. creationTimestamp)."""
        self._control("POST", "clock", {"advance": seconds})

    def open_watches(self) -> list[dict[str, Any]]:
        """The open watch streams: id, path, query, started, stalled, pending."""
        return list(self._control("GET", "watches"))

    def wait_for_watches(
        self, count: int = 1, *, path: str | None = None, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Block until exactly ``count`` watches (on ``path``, if given) are open; return them.

        Exactly, so that a watch the client has just abandoned (still open until the server
        notices) is not mistaken for its replacement.
        """
        seen: list[dict[str, Any]] = []

        def exactly() -> bool:
            seen[:] = [w for w in self.open_watches() if path is None or w["path"] == path]
            return len(seen) == count

        try:
            wait_for(exactly, what=f"{count} open watch(es)", within=timeout)
        except AssertionError as exc:
            raise FakeKubeError(f"{exc}; have {len(seen)}") from None
        return seen

    def fail_requests(
        self,
        status: int,
        *,
        count: int | None = None,
        methods: list[str] | None = None,
        path_pattern: str | None = None,
        message: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer API requests (matching ``methods``/``path_pattern``) with ``status``.

        For the next ``count`` matching requests, or until ``clear_faults``. Setting a fault
        replaces the previous one.
        """
        body = {
            "status": status,
            "count": count,
            "methods": methods,
            "path_pattern": path_pattern,
            "message": message,
            "retry_after": retry_after,
        }
        self._control("PUT", "fault", body)

    def clear_faults(self) -> None:
        self._control("DELETE", "fault")

    def requests(
        self, *, method: str | None = None, path: str | None = None
    ) -> list[LoggedRequest]:
        """The API request log, optionally only one method and/or exact path."""
        entries = [LoggedRequest(**e) for e in self._control("GET", "requests")]
        return [
            e
            for e in entries
            if (method is None or e.method == method) and (path is None or e.path == path)
        ]

    def reset_requests(self) -> None:
        self._control("DELETE", "requests")

    def set_bookmark_interval(self, seconds: float) -> None:
        self._control("PUT", "bookmark-interval", {"seconds": seconds})
