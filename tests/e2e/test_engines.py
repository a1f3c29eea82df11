"""The grpcio engine (`--grpc-server grpcio`), kept as a fallback, still serves Envoy."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.gateway import HOST, start_gateway
from tests.support.http import request
from tests.support.keys import claims, rsa_key


def test_grpcio_engine_allows_denies_and_drains(tmp_path: Path) -> None:
    key = rsa_key("engine")
    gw = start_gateway(tmp_path, key, extra=("--grpc-server", "grpcio"))
    try:
        allowed = request(gw.url, "/orders", host=HOST, token=key.sign(claims(sub="e")))
        assert allowed.status == 200
        assert allowed.json()["headers"]["x-user-id"] == "e"
        assert request(gw.url, "/orders", host=HOST).status == 401
        denied = request(gw.url, "/orders", host=HOST, token=key.sign(claims(scope="x")))
        assert denied.status == 403
    finally:
        code = gw.sidecar.terminate()
        gw.stop()
    assert code == 0, gw.sidecar.output()
