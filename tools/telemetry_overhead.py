"""What observability adds to one check: CPU microseconds per decision, in process.

Calls AuthorizationServicer.check in a loop over one snapshot (an allowed request with a
cached token, and a denied one without a token) with:

    bare       no observer, tracing off (the check path without metrics and decision log)
    telemetry  metrics + decision log (every allow logged; lines written to /dev/null)
    sampled    metrics + decision log with --log-allow-sample-rate 0
    traced     telemetry + tracing on (OTLP/gRPC to a local receiver)

usage: python tools/telemetry_overhead.py [CHECKS]   (default 10000 per case and round)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from authz._gen.authz.envoy.v3.ext_authz_pb2 import CheckRequest  # noqa: E402
from authz.jwt.providers import offline_provider  # noqa: E402
from authz.jwt.verify import Verifier  # noqa: E402
from authz.policy.store import PolicyStore, SourceDocument  # noqa: E402
from authz.ratelimit.memory import MemoryLimiter  # noqa: E402
from authz.server.observe import CheckObserver, CheckTelemetry  # noqa: E402
from authz.server.servicer import AuthorizationServicer  # noqa: E402
from authz.telemetry import tracing  # noqa: E402
from authz.telemetry.decisionlog import DecisionLog, LineWriter  # noqa: E402
from authz.telemetry.metrics import Metrics  # noqa: E402
from tests.support.grpcclient import check_request  # noqa: E402
from tests.support.keys import claims, rsa_key  # noqa: E402
from tests.support.otlp import OtlpReceiver  # noqa: E402

KEY = rsa_key("bench")
POLICY = f"""
apiVersion: authz.dev/v1alpha1
kind: AuthPolicy
metadata: {{name: bench, namespace: t}}
spec:
  hosts: [api.test]
  issuers:
  - {{issuer: https://issuer.test, audiences: [orders-api], jwks: {json.dumps({"keys": [KEY.jwk]})}}}
  rules:
  - {{name: read, match: {{methods: [GET], paths: ["/orders/*"]}}, scopes: {{allOf: [orders:read]}}}}
  response:
    setHeaders: [{{name: x-user-id, claim: sub}}]
    removeHeaders: [authorization]
"""


async def measure(servicer: AuthorizationServicer, request: CheckRequest, checks: int) -> float:
    """CPU µs per check (all threads: the log writer's and the span exporter's count too)."""
    start = time.process_time()
    for _ in range(checks):
        await servicer.check(request)
    return (time.process_time() - start) / checks * 1e6


async def main(checks: int, rounds: int = 7) -> None:
    store = PolicyStore(bind=offline_provider, publish=lambda _s: None)
    snapshot = store.update("bench", [SourceDocument("bench:0", yaml.safe_load(POLICY))])
    token = KEY.sign(claims(scope="orders:read", ttl=3600))
    requests = {
        "allow": check_request(
            host="api.test", path="/orders/1?x=1", headers={"authorization": f"Bearer {token}"}
        ),
        "deny": check_request(host="api.test", path="/orders/1"),
    }
    sink = open(os.devnull, "wb")  # noqa: SIM115, ASYNC230 - lives as long as the writer
    writer = LineWriter(sink)
    receiver = OtlpReceiver()

    def telemetry(rate: float = 1.0) -> CheckTelemetry:
        return CheckTelemetry(
            metrics=Metrics(), log=DecisionLog(writer.submit, allow_sample_rate=rate)
        )

    cases: dict[str, tuple[CheckObserver | None, bool]] = {
        "bare": (None, False),
        "telemetry": (telemetry(), False),
        "sampled": (telemetry(0.0), False),
        "traced": (telemetry(), True),
    }
    servicers = {
        name: AuthorizationServicer(
            snapshot=lambda: snapshot,
            limiter=MemoryLimiter(),
            verifier=Verifier(cache_size=1000),
            observer=observer,
        )
        for name, (observer, _traced) in cases.items()
    }
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):  # interleaved rounds; the median resists a noisy neighbour
        for name, (_observer, traced) in cases.items():
            if traced:
                tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
            for kind, request in requests.items():
                await measure(servicers[name], request, 200)  # warm: token cache, children
                samples.setdefault((name, kind), []).append(
                    await measure(servicers[name], request, checks)
                )
            tracing.shutdown()
    writer.close()
    receiver.stop()
    print(f"CPU µs per check, median of {rounds} rounds of {checks} checks")
    print(f"{'case':<10} {'allow':>8} {'deny':>8}")
    for name in cases:
        allow, deny = (statistics.median(samples[(name, k)]) for k in ("allow", "deny"))
        print(f"{name:<10} {allow:>8.1f} {deny:>8.1f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
