"""Rate limits and IP filtering end to end: the real Envoy, two real sidecar processes, one real
redis-server that the test kills and restarts."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.envoy import Envoy, start_envoy
from tests.support.grpcclient import CheckClient, check_request
from tests.support.http import Response, request
from tests.support.keys import SigningKey, claims, jwks, rsa_key
from tests.support.policies import auth_policy, issuer, rule, to_yaml
from tests.support.procs import Proc, start_echo, start_http_dir, start_sidecar
from tests.support.redis import RedisServer
from tests.support.wait import wait_for

LIMITS = "limits.test"
NET = "net.test"


def policies(jwks_url: str) -> str:
    def limit(name: str, requests: int, window: str, key: str, **extra: str) -> dict[str, Any]:
        return {"name": name, "requests": requests, "window": window, "key": key, **extra}

    def anonymous(name: str, *limits: dict[str, Any]) -> dict[str, Any]:
        return rule(name, paths=[f"/{name}"], anonymous=True, rateLimits=list(limits))

    limits = auth_policy(
        "limits",
        namespace="e2e",
        hosts=[LIMITS],
        issuers=[issuer(jwks_uri=jwks_url)],
        rules=[
            rule(
                "create-order",
                methods=["POST"],
                paths=["/orders"],
                scopes=["orders:write"],
                rateLimits=[limit("per-user", 3, "1m", "claim:sub")],
            ),
            rule(
                "per-ip",
                paths=["/ip"],
                anonymous=True,
                rateLimits=[limit("ip", 2, "1m", "sourceIP")],
            ),
            rule(
                "keyed",
                paths=["/keyed"],
                anonymous=True,
                rateLimits=[limit("api-key", 2, "1m", "header:x-api-key")],
            ),
            anonymous("shared", limit("total", 25, "1m", "global")),
            anonymous("resume", limit("total", 25, "1m", "global")),
            anonymous("daily", limit("quota", 4, "1d", "global", algorithm="fixedWindow")),
        ],
    )
    net = auth_policy(
        "net",
        namespace="e2e",
        hosts=[NET],
        sourceIPs={"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.6"]},
    )
    return to_yaml(limits, net)


@dataclass
class Stack:
    key: SigningKey
    redis: RedisServer
    sidecars: list[tuple[Proc, str, int]]
    envoy: Envoy
    procs: list[Proc]

    def get(self, path: str, **kwargs: object) -> Response:
        kwargs.setdefault("host", LIMITS)
        return request(self.envoy.url, path, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ratelimit-e2e")
    key = rsa_key("rl-1")
    keys_dir = tmp / "jwks"
    keys_dir.mkdir()
    (keys_dir / "jwks.json").write_text(json.dumps(jwks(key)))
    jwks_server, jwks_port = start_http_dir(tmp, keys_dir, name="jwks-server")
    policy_dir = tmp / "policies"
    policy_dir.mkdir()
    (policy_dir / "limits.yaml").write_text(policies(f"http://127.0.0.1:{jwks_port}/jwks.json"))
    redis = RedisServer(tmp).start()
    flags = [
        "--redis-url",
        redis.url,
        "--redis-timeout-ms",
        "500",  # generous: a loaded CI machine must not turn slow answers into fallbacks
        # The test client plays one trusted balancer; Envoy appends its peer after its entry.
        "--trusted-proxy-hops",
        "2",
    ]
    sidecars = [start_sidecar(tmp, [policy_dir], extra=flags, name=f"authz-{i}") for i in range(2)]
    echo, echo_port = start_echo(tmp)
    envoy = start_envoy(tmp, authz=sidecars[0][1], upstream_port=echo_port, trusted_proxy_hops=1)
    stack = Stack(key, redis, sidecars, envoy, [jwks_server, echo])
    yield stack
    envoy.terminate()
    for proc, _, _ in sidecars:
        proc.terminate()
    for proc in stack.procs:
        proc.terminate()
    redis.stop()


def ratelimit_headers(response: Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("ratelimit-")}


def test_headers_on_allow_and_429_with_retry_after(stack: Stack) -> None:
    token = stack.key.sign(claims(scope="orders:write", sub="e2e-alice"))
    allowed = [stack.get("/orders", method="POST", token=token) for _ in range(3)]
    assert [r.status for r in allowed] == [200, 200, 200]
    assert [ratelimit_headers(r)["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
    assert {ratelimit_headers(r)["ratelimit-limit"] for r in allowed} == {"3"}
    assert all(60 <= int(ratelimit_headers(r)["ratelimit-reset"]) <= 66 for r in allowed)
    denied = stack.get("/orders", method="POST", token=token)
    assert denied.status == 429
    assert denied.json()["error"] == "rate_limited"
    assert len(denied.json()["decision_id"]) == 16
    assert 1 <= int(denied.headers["retry-after"]) <= 66
    assert ratelimit_headers(denied)["ratelimit-remaining"] == "0"
    assert ratelimit_headers(denied)["ratelimit-limit"] == "3"
    # another user is counted separately
    other = stack.key.sign(claims(scope="orders:write", sub="e2e-bob"))
    assert stack.get("/orders", method="POST", token=other).status == 200


def test_per_ip_and_per_header_keys(stack: Stack) -> None:
    ip_a, ip_b = {"x-forwarded-for": "198.51.100.1"}, {"x-forwarded-for": "6.6.6.6, 198.51.100.2"}
    assert [stack.get("/ip", headers=ip_a).status for _ in range(3)] == [200, 200, 429]
    assert stack.get("/ip", headers=ip_b).status == 200
    spoofed = {"x-forwarded-for": "198.51.100.2, 198.51.100.1"}  # rightmost is what counts
    assert stack.get("/ip", headers=spoofed).status == 429
    key_a = {"x-api-key": "key-a"}
    assert [stack.get("/keyed", headers=key_a).status for _ in range(3)] == [200, 200, 429]
    assert stack.get("/keyed", headers={"x-api-key": "key-b"}).status == 200
    assert [stack.get("/keyed").status for _ in range(3)] == [200, 200, 429]  # no key: one bucket


@pytest.mark.parametrize(
    ("xff", "status"),
    [
        ("10.1.2.3", 200),
        ("203.0.113.9, 10.1.2.3", 200),
        ("10.1.2.3, 203.0.113.9", 403),
        ("10.6.6.6", 403),
        ("2001:db8::7", 200),
        ("2001:db9::7", 403),
        (None, 403),  # no header behind a trusted proxy: the address is unknown
    ],
)
def test_source_ip_filter(stack: Stack, xff: str | None, status: int) -> None:
    headers = {"x-forwarded-for": xff} if xff is not None else {}
    response = stack.get("/", host=NET, headers=headers)
    assert response.status == status
    if status == 403:
        assert response.json()["error"] == "ip_denied"


def _check_all(stack: Stack, path: str, count: int) -> list[bool]:
    """`count` concurrent Checks, alternating between the two sidecars, straight over gRPC."""
    clients = [CheckClient(grpc) for _, grpc, _ in stack.sidecars]
    try:

        def one(i: int) -> bool:
            response = clients[i % 2].check(check_request(host=LIMITS, path=path))
            return response.status.code == 0

        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for client in clients:
            client.close()


def test_two_sidecars_sharing_redis_admit_exactly_n(stack: Stack) -> None:
    assert sum(_check_all(stack, "/shared", 200)) == 25


def test_fixed_window_quota_is_shared(stack: Stack) -> None:
    assert sum(_check_all(stack, "/daily", 20)) == 4


def _log_count(proc: Proc, text: str) -> int:
    return proc.output().count(text)


def _wait_for_log(proc: Proc, text: str, count: int) -> None:
    wait_for(
        lambda: _log_count(proc, text) >= count,
        what=lambda: f"{proc.name} logging {text!r}\n{proc.output()[-3000:]}",
    )


def test_redis_killed_mid_run_then_restarted(stack: Stack) -> None:
    first, second = stack.sidecars[0][0], stack.sidecars[1][0]
    client = CheckClient(stack.sidecars[0][1])
    try:
        assert client.check(check_request(host=LIMITS, path="/resume")).status.code == 0
        stack.redis.kill()
        answered = []
        for i in range(150):
            response = client.check(
                check_request(
                    host=LIMITS,
                    path="/ip",
                    # As Envoy forwards it: the balancer's entry, then the peer Envoy appended.
                    headers={"x-forwarded-for": f"192.0.2.{i % 3}, 127.0.0.1"},
                )
            )
            answered.append(response.status.code)
        # every check answered (allowed or 429), none failed; the fallback enforced 2 per address
        assert set(answered) <= {0, 8}
        assert answered.count(0) == 6
        _wait_for_log(first, "using each policy's rateLimitFailureMode", 1)
        metrics = (
            urllib.request.urlopen(f"http://127.0.0.1:{stack.sidecars[0][2]}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert 'authz_ratelimit_backend_mode{mode="fallback"} 1' in metrics
        # Nobody waited on the dead Redis: the three failures that opened the circuit were the
        # only checks that tried it.
        assert "\nauthz_ratelimit_backend_errors_total 3.0\n" in metrics
    finally:
        client.close()
    stack.redis.start()
    _wait_for_log(first, "answers again", 1)
    # the second sidecar may not have noticed the outage (no traffic); either way it is on Redis
    total = sum(_check_all(stack, "/resume", 100))
    assert total == 25  # the restarted Redis starts empty; both sidecars count in it again
    assert _log_count(second, "answers again") <= 1
