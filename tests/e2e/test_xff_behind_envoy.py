"""The client address the way the Helm chart wires it: Envoy with use_remote_address and
xff_num_trusted_hops T appends its own peer to X-Forwarded-For, so the sidecar reads the (T+1)th
entry from the right. One trusted load balancer in front (T=1): the address it reported decides."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.support.envoy import start_envoy
from tests.support.http import request
from tests.support.policies import auth_policy, write_policies
from tests.support.procs import start_echo, start_sidecar

POLICY = auth_policy("office", namespace="shop", sourceIPs={"allow": ["203.0.113.0/24"]})


def test_the_address_the_trusted_balancer_reported_decides(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    write_policies(tmp_path / "policies" / "office.yaml", POLICY)
    with contextlib.ExitStack() as stack:
        sidecar, grpc, _ = start_sidecar(
            tmp_path, [tmp_path / "policies"], extra=["--trusted-proxy-hops", "2"]
        )
        stack.callback(sidecar.terminate)
        echo, echo_port = start_echo(tmp_path)
        stack.callback(echo.terminate)
        envoy = start_envoy(
            tmp_path,
            authz=grpc,
            upstream_port=echo_port,
            trusted_proxy_hops=1,
        )
        stack.callback(envoy.terminate)
        inside = request(
            envoy.url, "/", headers={"X-Forwarded-For": "203.0.113.7"}, host="office.test"
        )
        assert inside.status == 200, inside.body
        # A client cannot talk its way in: the balancer appends the real address after its claim.
        spoofed = request(
            envoy.url,
            "/",
            headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.9"},
            host="office.test",
        )
        assert spoofed.status == 403
        assert spoofed.json()["error"] == "ip_denied"
        # No balancer in front: no entry to trust, and the sidecar fails closed.
        assert request(envoy.url, "/", host="office.test").status == 403
