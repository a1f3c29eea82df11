"""The real Envoy as the mutual-TLS client of the sidecar (standalone mode across a network).

Envoy's authz cluster carries the transport socket docs/tls.md shows (authz.devtools.envoyconf
upstream_tls): the sidecar's certificate checked against the CA and its name, ALPN h2, Envoy's
own client certificate. Requests through Envoy are then allowed or denied by the sidecar over
mTLS; an Envoy whose client certificate comes from another CA never gets a check through (the
handshake fails) and so denies everything, fail closed.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from authz.devtools.envoyconf import upstream_tls
from tests.e2e.gateway import HOST, start_gateway
from tests.support.certs import Authority, SecretVolume, secret_volume, write_pair
from tests.support.envoy import start_envoy
from tests.support.http import request
from tests.support.keys import claims, rsa_key
from tests.support.wait import wait_for


def _tls_flags(volume: SecretVolume) -> tuple[str, ...]:
    return (
        "--tls-cert",
        str(volume.cert),
        "--tls-key",
        str(volume.key),
        "--tls-client-ca",
        str(volume.ca),
    )


def _stat(admin_port: int, name: str) -> int:
    url = f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$&format=json"
    with urllib.request.urlopen(url, timeout=5) as response:
        stats = json.load(response)["stats"]
    return sum(int(stat.get("value", 0)) for stat in stats)


@pytest.mark.parametrize("engine", ["h2", "grpcio"])
def test_envoy_calls_the_sidecar_over_mutual_tls(tmp_path: Path, engine: str) -> None:
    ca, stranger = Authority.create("authz-ca"), Authority.create("stranger-ca")
    volume = secret_volume(tmp_path / "secret", ca.issue("authz-1"), ca=ca.cert)
    cert, key = write_pair(tmp_path, ca.issue("envoy", client=True), name="envoy")
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    authz_tls = upstream_tls(
        ca=str(tmp_path / "ca.crt"), name="localhost", cert=str(cert), key=str(key)
    )
    signing = rsa_key("tls")
    gw = start_gateway(
        tmp_path,
        signing,
        extra=("--grpc-server", engine, *_tls_flags(volume)),
        authz_tls=authz_tls,
    )
    try:
        allowed = request(gw.url, "/orders", host=HOST, token=signing.sign(claims(sub="t")))
        assert allowed.status == 200
        assert allowed.json()["headers"]["x-user-id"] == "t"
        assert request(gw.url, "/orders", host=HOST).status == 401
        scoped = request(gw.url, "/orders", host=HOST, token=signing.sign(claims(scope="x")))
        assert scoped.status == 403
        assert "over TLS" in gw.sidecar.output()

        # A renewal (same CA) is picked up by the running sidecar; Envoy keeps being answered.
        volume.renew(ca.issue("authz-2"), ca=ca.cert)
        wait_for(
            lambda: "TLS certificate reloaded: CN=authz-2" in gw.sidecar.output(),
            what="the sidecar reloading its certificate",
            unless=gw.sidecar.exited,
        )
        again = request(gw.url, "/orders", host=HOST, token=signing.sign(claims(sub="u")))
        assert again.status == 200

        # An Envoy with a client certificate from a CA the sidecar does not trust.
        other_cert, other_key = write_pair(
            tmp_path, stranger.issue("envoy", client=True), name="stranger"
        )
        rogue_tls = upstream_tls(
            ca=str(tmp_path / "ca.crt"), name="localhost", cert=str(other_cert), key=str(other_key)
        )
        rogue = start_envoy(
            tmp_path,
            authz=gw.grpc,
            upstream_port=_echo_port(gw.envoy.proc.log_path.parent / "envoy.json"),
            authz_tls=rogue_tls,
            name="rogue-envoy",
        )
        try:
            token = signing.sign(claims(sub="r"))
            assert request(rogue.url, "/orders", host=HOST, token=token).status == 403
            # The sidecar cut the connection during the handshake: no check was ever sent.
            assert _stat(rogue.admin_port, "cluster.authz.upstream_cx_connect_fail") >= 1
        finally:
            rogue.terminate()
    finally:
        code = gw.sidecar.terminate()
        gw.stop()
    assert code == 0, gw.sidecar.output()


def _echo_port(envoy_config: Path) -> int:
    """The upstream port of the gateway's Envoy, for a second Envoy in front of the same echo."""
    config = json.loads(envoy_config.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters["upstream"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    return int(endpoint["endpoint"]["address"]["socket_address"]["port_value"])
