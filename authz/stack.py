"""The check stack: everything that answers checks, built in one place.

`authz serve` builds one per process: the single process and each worker of --workers N answer
checks with theirs; the supervisor of the workers keeps one without a check server, for the
admin API and the policy status. What differs between them is a parameter here, never a
second construction site.

    tracing, metrics, decision log ─┐
    background work, HTTP session ──┼─> key registry ─> policy store (holds the current snapshot)
    introspector, revocations ──────┤
    verifier, rate limiter, blocks ─┴─> servicer ─> check server (bound at build: a taken port
                                                    is exit 2 before anything starts)
    policy store ──> ext_proc servicer (response redaction): on the check server with the
                     grpcio engine; authz.app serves it on --ext-proc-listen otherwise

`build_check_stack` builds the parts that need no policies; `start` follows the first policy
load (first key fetches, the rate limiter, the check server with health NOT_SERVING); `serve`
turns health SERVING; `drain` stops answering and lets in-flight checks finish; `close` stops
everything in reverse order (authz.lifecycle.Parts). A new part of the check path is a field
here, built in `build_check_stack`, and if it runs, one step in `start`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from authz.jwt.introspector import Introspector
from authz.jwt.providers import KeyRegistry
from authz.jwt.revocation import Revocations
from authz.jwt.secrets import FileSecrets
from authz.jwt.verify import Verifier
from authz.lifecycle import Background, Parts
from authz.policy.ownership import HostGrants
from authz.policy.snapshot import Snapshot
from authz.policy.store import PolicyStore
from authz.ratelimit.blocks import BlockStore
from authz.ratelimit.factory import build_blocks, build_limiter, redis_client, shared_client
from authz.ratelimit.limiter import Limiter
from authz.server.extproc import ExtProcServicer
from authz.server.grpc_server import GrpcServer
from authz.server.h2limits import limits_of
from authz.server.h2server import CheckServer, build_check_server
from authz.server.observe import BlockTelemetry, CheckTelemetry
from authz.server.servicer import AuthorizationServicer
from authz.server.tls import ServerTls
from authz.settings import ListenAddress, Settings
from authz.settings.ratelimit import parse_redis_url
from authz.sources.files import report
from authz.telemetry import tracing
from authz.telemetry.adapters import RateLimitMetrics
from authz.telemetry.decisionlog import DecisionLog, LineWriter, Stream
from authz.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from authz.sharedrevocations import SharedRevocations

log = logging.getLogger(__name__)


@dataclass(eq=False)
class CheckStack:
    settings: Settings
    metrics: Metrics
    background: Background
    registry: KeyRegistry
    store: PolicyStore
    verifier: Verifier
    limiter: Limiter
    blocks: BlockStore
    servicer: AuthorizationServicer
    #: None in the supervisor of --workers N: its workers answer the checks.
    server: CheckServer | None
    #: The listeners' TLS (--tls-cert), renewed in the background; None: plaintext.
    tls: ServerTls | None
    parts: Parts = field(default_factory=Parts)
    #: With --redis-url: keeps the verifier's revocation list a replica of the shared one.
    shared_revocations: SharedRevocations | None = None
    #: ext_proc's Process (response redaction): on the grpcio check server, or --ext-proc-listen.
    ext_proc: ExtProcServicer | None = None
    _drained: bool = field(default=False, init=False)

    async def start(self) -> None:
        """Once the first policies are in the store: try their keys, then start answering
        (health still NOT_SERVING)."""
        fetch_timeout = self.settings.jwks.fetch_timeout
        # A replica turns ready with keys in hand rather than answering 503 to its first checks.
        await self.parts.start("issuer keys", lambda: self.registry.first_attempts(fetch_timeout))
        await self.parts.start("rate limiter", self.limiter.start, stop=self.limiter.close)
        shared = self.shared_revocations
        if shared is not None:
            await self.parts.start(
                "revocation list", lambda: shared.start(self.background), stop=shared.close
            )
        await self.parts.start("brute-force blocks", self.blocks.start, stop=self.blocks.close)
        if self.server is not None:
            await self.parts.start("check server", self.server.start, stop=lambda: self.drain(0))

    async def serve(self) -> None:
        """Health SERVING: Envoy and kubelets may send checks."""
        if self.server is not None:
            await self.server.set_serving(True)

    async def drain(self, grace: float) -> None:
        """Health NOT_SERVING, no new connections; checks in flight get `grace` seconds."""
        if self.server is not None and not self._drained:
            self._drained = True
            await self.server.stop(grace)

    async def close(self) -> None:
        await self.parts.close()


async def build_check_stack(
    settings: Settings,
    *,
    listen: ListenAddress | None,
    stdout: Stream | None = None,
    report_policies: bool = True,
    grants: HostGrants | None = None,
) -> CheckStack:
    """The check stack of `settings`, answering on `listen` (None: no check server), built on
    the running event loop; a failure closes what was built. Decision log lines go to `stdout`
    (default sys.stdout). `report_policies` logs policy state changes and counts them in
    metrics (one process per pod does: workers would repeat it). `grants` (--allowed-hosts)
    limit the hosts each namespace's policies may claim."""
    parts = Parts()
    try:
        tracing.configure()  # raises ConfigError naming an unusable OTEL_* variable
        parts.started("tracing", tracing.shutdown)
        metrics = Metrics()
        writer = LineWriter(stdout, on_drop=metrics.log_dropped)
        parts.started("decision log", writer.close)
        background = Background()
        parts.started("background work", background.close)
        session = aiohttp.ClientSession()
        parts.started("HTTP client", session.close)
        registry = KeyRegistry(
            settings=settings.jwks,
            session=session,
            on_fetch=metrics.jwks_fetch,
            background=background,
        )
        parts.started("issuer keys", registry.close)
        store = PolicyStore(
            bind=registry.provider,
            publish=_PolicyReport(metrics) if report_policies else None,
            retain=registry.retain,
            grants=grants,
        )
        introspector = Introspector(
            session=session,
            secrets=FileSecrets(settings.introspection.secrets_dir),
            settings=settings.introspection,
            observe=metrics.introspection,
        )
        revocations = Revocations(max_entries=settings.introspection.max_revocations)
        shared_replay = None
        redis = shared_client(settings.ratelimit)
        if redis is not None:
            # The Redis-backed parts load only with --redis-url (ratelimit/factory.py says why).
            from authz.jwt.sharedreplay import RedisReplay

            shared_replay = RedisReplay(redis[0], description=redis[1])
            parts.started("DPoP replay store", shared_replay.close)
        verifier = Verifier(
            max_token_bytes=settings.tokens.max_token_bytes,
            cache_size=settings.tokens.cache_size,
            introspector=introspector,
            revocations=revocations,
            dpop_window=settings.tokens.dpop_proof_window,
            replay_cache_size=settings.tokens.dpop_replay_cache_size,
            shared_replay=shared_replay,
            nonce_secret=(
                settings.tokens.dpop_nonce_secret.encode()
                if settings.tokens.dpop_nonce_secret
                else None
            ),
        )
        shared = _shared_revocations(settings, revocations)
        limiter = build_limiter(settings.ratelimit, observers=(RateLimitMetrics(metrics),))
        decision_log = DecisionLog(
            writer.submit, allow_sample_rate=settings.telemetry.log_allow_sample_rate
        )
        blocks = build_blocks(settings.ratelimit)
        blocks.add_observer(BlockTelemetry(metrics=metrics, log=decision_log))
        metrics.bruteforce_blocked_keys(blocks.__len__)
        servicer = AuthorizationServicer(
            snapshot=store.current,
            verifier=verifier,
            limiter=limiter,
            block_store=blocks,
            observer=CheckTelemetry(metrics=metrics, log=decision_log),
            trusted_proxy_hops=settings.client.trusted_proxy_hops,
        )
        tls = ServerTls.load(settings.tls, observer=metrics) if settings.tls.enabled else None
        if tls is not None:
            renewals = background.task("TLS certificate reload", tls.watch)
            parts.started("TLS certificate reload", renewals.stop)
        ext_proc = ExtProcServicer(
            snapshot=store.current,
            max_body_bytes=settings.response.body_max_bytes,
            # The decision log only: a refused response is no check, and its zero latency
            # would skew the check latency histogram.
            observer=CheckTelemetry(log=decision_log),
        )
        server: CheckServer | None = None
        if listen is not None and settings.server.grpc_server == "grpcio":
            server = GrpcServer(
                servicer,
                listen,
                extra=[ext_proc.handler()],
                max_message_bytes=settings.response.body_max_bytes,
                tls=tls,
            )
        elif listen is not None:
            server = build_check_server(
                settings.server.grpc_server,
                servicer,
                listen,
                limits=limits_of(settings.connections),
                tls=tls,
            )
    except BaseException:
        await parts.close()
        raise
    return CheckStack(
        settings,
        metrics,
        background,
        registry,
        store,
        verifier,
        limiter,
        blocks,
        servicer,
        server,
        tls,
        parts,
        shared,
        ext_proc=ext_proc,
    )


def _shared_revocations(settings: Settings, local: Revocations) -> SharedRevocations | None:
    redis = settings.ratelimit
    if redis.redis_url is None:
        return None
    from authz.sharedrevocations import SharedRevocations

    address = parse_redis_url(redis.redis_url, mode=redis.redis_mode)
    return SharedRevocations(redis_client(address, redis), local, timeout=redis.redis_timeout)


class _PolicyReport:
    """Told about each new snapshot: logs the policy states that changed, counts them by state."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._previous: Snapshot | None = None

    def __call__(self, snapshot: Snapshot) -> None:
        report(snapshot, previous=self._previous)
        self._previous = snapshot
        self._metrics.policy_states([str(state.state) for state in snapshot.states])
