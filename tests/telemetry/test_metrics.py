"""Metrics: the contract's names, the counts real checks produce, bounded labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authz.jwt.providers import KeyRegistry, RemoteKeys
from authz.jwt.sources import KeySource, KeySourceKind
from authz.policy.store import PolicyStore, SourceDocument
from authz.server.observe import CheckTelemetry
from authz.settings import JwksSettings
from authz.telemetry import labels, tracing
from authz.telemetry.adapters import ControllerMetrics, RateLimitMetrics
from authz.telemetry.metrics import Metrics
from tests.support.grpcclient import check_request
from tests.support.keys import claims, jwks
from tests.support.otlp import OtlpReceiver
from tests.support.policies import auth_policy
from tests.support.procs import Proc, start_http_dir
from tests.telemetry.fixtures import DRY_HOST, HOST, KEY, servicer

CONTRACT = {
    "authz_check_duration_seconds": "histogram",
    "authz_decisions": "counter",
    "authz_jwks_fetch": "counter",
    "authz_introspection": "counter",
    "authz_policies": "gauge",
    "authz_ratelimit_backend_errors": "counter",
    "authz_ratelimit_backend_mode": "gauge",
    "authz_watch_events": "counter",
    "authz_watch_restarts": "counter",
    "authz_build_info": "gauge",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_metric_of_the_contract_is_exposed_with_its_type() -> None:
    body, _ = Metrics().render()
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    for name, kind in CONTRACT.items():
        assert families.get(name) == kind, name
    assert "authz_decisions_created" not in body.decode()


def test_every_policy_state_and_backend_mode_is_a_series_from_the_first_scrape() -> None:
    """Dashboards and alerts on these gauges must not see "no data" for a state nobody is in."""
    samples = scrape(Metrics())
    states = {series for name, series in samples if name == "authz_policies"}
    modes = {series for name, series in samples if name == "authz_ratelimit_backend_mode"}
    assert states == {(("state", s),) for s in labels.POLICY_STATES}
    assert modes == {(("mode", m),) for m in labels.BACKEND_MODES}
    assert {samples[("authz_policies", s)] for s in states} == {0.0}


def test_build_info_names_the_version() -> None:
    samples = scrape(Metrics())
    ((name, labels),) = [k for k in samples if k[0] == "authz_build_info"]
    assert dict(labels)["version"] == "0.1.0"
    assert samples[(name, labels)] == 1.0


async def test_checks_are_counted_by_policy_decision_and_reason() -> None:
    metrics = Metrics()
    service = servicer(CheckTelemetry(metrics=metrics))
    good = KEY.sign(claims(scope="orders:read"))
    await service.check(check_request(host=HOST, path="/orders/1", headers=_bearer(good)))
    await service.check(check_request(host=HOST, path="/orders/2", headers=_bearer(good)))
    await service.check(check_request(host=HOST, path="/orders/3"))
    await service.check(check_request(host="nobody.test", path="/"))
    samples = scrape(metrics)
    assert value(samples, "authz_decisions_total", **_labels("t/p", "allow", "allowed")) == 2
    assert value(samples, "authz_decisions_total", **_labels("t/p", "deny", "missing_token")) == 1
    assert value(samples, "authz_decisions_total", **_labels("", "deny", "no_policy")) == 1
    assert value(samples, "authz_check_duration_seconds_count", decision="allow") == 2
    assert value(samples, "authz_check_duration_seconds_count", decision="deny") == 2
    assert 0 < value(samples, "authz_check_duration_seconds_sum", decision="allow") < 5


async def test_dry_run_counts_the_would_be_decision_and_times_the_allow() -> None:
    metrics = Metrics()
    response = await servicer(CheckTelemetry(metrics=metrics)).check(
        check_request(host=DRY_HOST, path="/orders/1")
    )
    assert response.status.code == 0  # allowed
    samples = scrape(metrics)
    would_be = _labels("t/dry", "deny", "missing_token", dry_run="true")
    assert value(samples, "authz_decisions_total", **would_be) == 1
    assert value(samples, "authz_check_duration_seconds_count", decision="allow") == 1
    assert value(samples, "authz_check_duration_seconds_count", decision="deny") == 0


async def test_labels_never_carry_subjects_ips_paths_or_tokens() -> None:
    metrics = Metrics()
    service = servicer(CheckTelemetry(metrics=metrics))
    secrets_seen: list[str] = []
    for i in range(40):
        token = KEY.sign(claims(sub=f"user-{i}", scope="orders:read" if i % 2 else "x"))
        secrets_seen += [f"user-{i}", token, f"/orders/{i}", f"10.1.2.{i}"]
        await service.check(
            check_request(
                host=HOST, path=f"/orders/{i}", headers=_bearer(token), source_ip=f"10.1.2.{i}"
            )
        )
    body = metrics.render()[0].decode()
    for secret in secrets_seen:
        assert secret not in body
    series = [k for k in scrape(metrics) if k[0] == "authz_decisions_total"]
    assert len(series) == 2  # allowed + insufficient_scope, whatever the traffic


def test_policy_states_follow_the_snapshot() -> None:
    metrics = Metrics()
    store = PolicyStore(bind=lambda s: pytest.fail("no keys needed"), publish=lambda _s: None)
    broken = auth_policy("broken", namespace="t", hosts=["b.test"])
    del broken["spec"]["rules"]
    snapshot = store.update(
        "test",
        [
            SourceDocument("a", _anonymous("one", "a.test")),
            SourceDocument("b", _anonymous("two", "a.test")),  # same host: conflicted
            SourceDocument("c", broken),
        ],
    )
    metrics.policy_states([str(s.state) for s in snapshot.states])
    samples = scrape(metrics)
    assert value(samples, "authz_policies", state="ready") == 1
    assert value(samples, "authz_policies", state="conflicted") == 1
    assert value(samples, "authz_policies", state="invalid") == 1


def test_adapters_feed_rate_limit_and_watch_metrics() -> None:
    metrics = Metrics()
    ratelimit = RateLimitMetrics(metrics)
    ratelimit.on_mode_change("fallback")
    ratelimit.on_backend_error(ConnectionError("redis down"))
    ratelimit.on_backend_error(ConnectionError("redis down"))

    class Inner:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def watch_event(self, event_type: str) -> None:
            self.calls.append(event_type)

        def watch_restart(self, reason: str) -> None:
            self.calls.append(reason)

        def outage(self, active: bool) -> None: ...
        def listed(self, objects: int, seconds: float) -> None: ...
        def published(self, documents: int, seconds: float) -> None: ...
        def status_write(self, reason: str, outcome: str) -> None: ...
        def leading(self, leader: bool) -> None: ...

    inner = Inner()
    controller = ControllerMetrics(metrics, inner)
    controller.watch_event("ADDED")
    controller.watch_event("ADDED")
    controller.watch_restart("expired")
    samples = scrape(metrics)
    assert value(samples, "authz_ratelimit_backend_mode", mode="fallback") == 1
    assert value(samples, "authz_ratelimit_backend_mode", mode="redis") == 0
    assert value(samples, "authz_ratelimit_backend_errors_total") == 2
    assert value(samples, "authz_watch_events_total", type="ADDED") == 2
    assert value(samples, "authz_watch_restarts_total", reason="expired") == 1
    assert inner.calls == ["ADDED", "ADDED", "expired"]


@pytest.fixture
def jwks_dir(tmp_path: Path) -> Iterator[tuple[Proc, int]]:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "jwks.json").write_text(json.dumps(jwks(KEY)))
    proc, port = start_http_dir(tmp_path, directory, name="jwks")
    yield proc, port
    proc.terminate()


async def test_jwks_fetches_are_counted_and_traced(jwks_dir: tuple[Proc, int]) -> None:
    _proc, port = jwks_dir
    receiver = OtlpReceiver()
    metrics = Metrics()
    good = f"http://127.0.0.1:{port}/jwks.json?tenant=SECRET"
    bad = f"http://127.0.0.1:{port}/missing.json"
    try:
        assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        async with aiohttp.ClientSession() as session:
            registry = KeyRegistry(
                settings=JwksSettings(), session=session, on_fetch=metrics.jwks_fetch
            )
            ok = registry.provider(KeySource(KeySourceKind.JWKS_URI, good))
            failing = registry.provider(KeySource(KeySourceKind.JWKS_URI, bad))
            await registry.first_attempts(10)
            assert isinstance(ok, RemoteKeys)
            assert ok.keys is not None
            assert failing.keys is None
            await registry.close()
        tracing.force_flush()
        spans = receiver.wait_for(lambda s: s.name == "jwks.fetch", count=2)
    finally:
        tracing.shutdown()
        receiver.stop()
    samples = scrape(metrics)
    stripped = f"http://127.0.0.1:{port}/jwks.json"
    assert value(samples, "authz_jwks_fetch_total", issuer=stripped, result="success") == 1
    assert value(samples, "authz_jwks_fetch_total", issuer=bad, result="error") == 1
    assert "SECRET" not in metrics.render()[0].decode()
    assert sorted(s.status_code for s in spans) == [0, 2]  # the failed fetch is an error span


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _labels(policy: str, decision: str, reason: str, *, dry_run: str = "false") -> dict[str, str]:
    return {"policy": policy, "decision": decision, "reason": reason, "dry_run": dry_run}


def _anonymous(name: str, host: str) -> dict[str, object]:
    return auth_policy(name, namespace="t", hosts=[host])


def test_policy_state_labels_name_every_policy_state() -> None:
    from authz.policy.snapshot import PolicyStateKind
    from authz.telemetry import labels

    assert tuple(kind.value for kind in PolicyStateKind) == labels.POLICY_STATES
