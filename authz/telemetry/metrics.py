"""Prometheus metrics, served as text at GET /metrics on the --http-listen port.

One registry per Metrics instance (tests make their own; the service makes one), holding
exactly the metric names of the public contract plus process metrics. Label values are closed
sets (authz.telemetry.labels, authz.errors) or policy names: never a subject, IP, path or token.

The check path pays one histogram observe and one counter increment: the histogram's two
children are bound once, and counter children are cached per label tuple in a plain dict,
which is cheaper than prometheus_client's locked `labels()` lookup on every call.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from functools import partial

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from authz import __version__
from authz.telemetry import labels

#: Seconds; a check usually takes well under a millisecond, a key refetch up to the fetch timeout.
CHECK_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


def _strip_query(url: str) -> str:
    """A JWKS URL as a label value: never its query string (it might carry a credential)."""
    return url.partition("?")[0].partition("#")[0]


class Metrics:
    """Every metric of the sidecar, and the methods the parts call to update them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series double the output and nobody graphs them
        self.registry = registry or CollectorRegistry(auto_describe=True)
        reg = self.registry
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        counter, gauge = partial(Counter, registry=reg), partial(Gauge, registry=reg)
        build = gauge(
            "authz_build_info",
            "Always 1; the labels say which build is running.",
            ["version", "python_version"],
        )
        build.labels(__version__, platform.python_version()).set(1)
        self._duration = Histogram(
            "authz_check_duration_seconds",
            "Time to answer one ext_authz Check, by the answer given to Envoy.",
            ["decision"],
            buckets=CHECK_BUCKETS,
            registry=reg,
        )
        self._duration_allow = self._duration.labels(labels.ALLOW)
        self._duration_deny = self._duration.labels(labels.DENY)
        self._decisions = counter(
            "authz_decisions_total",
            "Decisions by policy, decision and reason; dry_run=true counts the would-be "
            "decisions of dryRun policies (those requests were allowed).",
            ["policy", "decision", "reason", "dry_run"],
        )
        self._decision_children: dict[tuple[str, bool, str, bool], Counter] = {}
        self._jwks = counter(
            "authz_jwks_fetch_total",
            "JWKS fetches by issuer (the issuer for discovery, else the JWKS URL) and result.",
            ["issuer", "result"],
        )
        introspections = counter(
            "authz_introspection_total",
            "Opaque-token introspections by result: active, inactive (answers of the issuer), "
            "cached (answered from the cache), error (the endpoint failed), shed (refused by "
            "the rate, concurrency or circuit-breaker bound).",
            ["result"],
        )
        self._introspections = {r: introspections.labels(r) for r in labels.INTROSPECTION_RESULTS}
        # The gauges of a closed set of states start every state at 0, so a dashboard sees every
        # series (a state nobody is in yet included) from the first scrape.
        self._policies = gauge(
            "authz_policies", "Policies known to the sidecar, by state.", ["state"]
        )
        self.policy_states([])
        self._backend_errors = counter(
            "authz_ratelimit_backend_errors_total", "Rate-limit backend (Redis) calls that failed."
        )
        self._backend_mode = gauge(
            "authz_ratelimit_backend_mode",
            "1 for the rate-limit backend mode in use (redis, or the local fallback), else 0.",
            ["mode"],
        )
        self.ratelimit_backend_mode("")
        self._watch_events = counter(
            "authz_watch_events_total", "Kubernetes watch events received, by event type.", ["type"]
        )
        self._watch_restarts = counter(
            "authz_watch_restarts_total",
            "Kubernetes watches restarted, by reason (ended, expired, stalled, unavailable, error).",
            ["reason"],
        )
        self._bf_failures = counter(
            "authz_bruteforce_failures_total",
            "Failed authentications (401) counted towards brute-force blocks, by policy and "
            "protection.",
            ["policy", "protection"],
        )
        self._bf_blocks = counter(
            "authz_bruteforce_blocks_total",
            "Brute-force blocks started, by policy and protection; dry_run=true: the policy is "
            "in dryRun mode, so the block only logs would-be denials.",
            ["policy", "protection", "dry_run"],
        )
        self._bf_blocked = gauge(
            "authz_bruteforce_blocked_keys",
            "Keys (clients) this process currently knows to be blocked.",
        )
        self._log_dropped = counter(
            "authz_decision_log_dropped_total",
            "Decision log lines dropped because stdout did not keep up.",
        )
        self._tls_expiry = gauge(
            "authz_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the listeners serve (--tls-cert) expires, in Unix time; 0 "
            "without TLS.",
        )
        self._tls_reloads = counter(
            "authz_tls_reloads_total",
            "Changed --tls-* files: taken into use (reloaded) or not usable (refused: the "
            "previous certificate keeps serving).",
            ["result"],
        )

    # --- the check path -------------------------------------------------------------------

    def check(
        self, seconds: float, *, allowed: bool, policy: str, reason: str, dry_run: bool
    ) -> None:
        """Count one check. `allowed` and `reason` are the decision (for a dryRun policy the
        would-be one); the histogram's label is the answer Envoy got."""
        (self._duration_allow if allowed or dry_run else self._duration_deny).observe(seconds)
        key = (policy, allowed, reason, dry_run)
        child = self._decision_children.get(key)
        if child is None:
            child = self._decisions.labels(
                policy, labels.decision_label(allowed), reason, "true" if dry_run else "false"
            )
            self._decision_children[key] = child
        child.inc()

    # --- everything else ------------------------------------------------------------------

    def introspection(self, result: str) -> None:
        self._introspections[result].inc()

    def jwks_fetch(self, issuer: str, result: str) -> None:
        self._jwks.labels(_strip_query(issuer), result).inc()

    def policy_states(self, states: list[str]) -> None:
        """Set authz_policies from the state of every policy document of a new snapshot."""
        for state in labels.POLICY_STATES:
            self._policies.labels(state).set(states.count(state))

    def ratelimit_backend_error(self) -> None:
        self._backend_errors.inc()

    def ratelimit_backend_mode(self, mode: str) -> None:
        for known in labels.BACKEND_MODES:
            self._backend_mode.labels(known).set(1 if known == mode else 0)

    def bruteforce_failure(self, policy: str, protection: str) -> None:
        self._bf_failures.labels(policy, protection).inc()

    def bruteforce_block(self, policy: str, protection: str, *, dry_run: bool) -> None:
        self._bf_blocks.labels(policy, protection, "true" if dry_run else "false").inc()

    def bruteforce_blocked_keys(self, count: Callable[[], float]) -> None:
        """Read the number of blocked keys from `count` at each scrape."""
        self._bf_blocked.set_function(count)

    def watch_event(self, event_type: str) -> None:
        self._watch_events.labels(event_type).inc()

    def watch_restart(self, reason: str) -> None:
        self._watch_restarts.labels(reason).inc()

    def log_dropped(self, count: int = 1) -> None:
        self._log_dropped.inc(count)

    def tls_certificate(self, not_after: float) -> None:
        self._tls_expiry.set(not_after)

    def tls_reload(self, result: str) -> None:
        self._tls_reloads.labels(result).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
