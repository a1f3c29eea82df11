"""The check port under attack: each hostile client of tests/support/hostile.py against a fresh
sidecar per (engine, attack), with a legitimate client beside it (docs/performance.md)."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from bench.procs import BenchError, Proc, loopback, start_sidecar
from bench.results import HostileResult
from tests.support import hostile
from tests.support.grpcclient import CHECK, check_request

ENGINES = ("h2", "grpcio")
#: Seconds each attack runs; half-open handshakes, stalled streams and unread answers need the
#: default handshake and stream deadlines to pass - for the half prefaces, after the attacker
#: has opened its 1,500 connections, which a slow moment of a shared machine stretches.
DURATION_S = 6.0
DURATIONS_S = {"half-prefaces": 20.0, "stalled-streams": 13.0, "zero-window": 13.0}
INTERVAL_S = 0.02  # how often the legitimate client checks.
#: Targets: the legitimate client's p99 under attack, and the sidecar's growth.
P99_MAX_MS, RSS_GROWTH_MAX_MB = 250.0, 64.0
POLICY = """\
apiVersion: authz.dev/v1alpha1
kind: AuthPolicy
metadata: {name: open, namespace: bench}
spec:
  hosts: [open.test]
  rules: [{name: open, allowAnonymous: true}]
"""


def _rss_mb(proc: Proc) -> float:
    return hostile.rss_bytes(proc.popen.pid) / 2**20


def measure(engine: str, attack: str, *, logs: Path, duration: float = 0) -> HostileResult:
    """One attack against a fresh sidecar on `engine`, with a legitimate client beside it."""
    message, stop = check_request(host="open.test").SerializeToString(), threading.Event()
    seconds, latencies, failed = duration or DURATIONS_S.get(attack, DURATION_S), [], 0
    with contextlib.ExitStack() as cleanup:
        policy = Path(cleanup.enter_context(tempfile.TemporaryDirectory())) / "open.yaml"
        policy.write_text(POLICY)
        listen, flags = loopback(), ["--grpc-server", engine]
        target, name = f"{listen.host}:{listen.port}", f"hostile-{engine}-{attack}"
        proc = start_sidecar(
            name, policies=policy, grpc_listen=target, http=loopback(), logs=logs, extra_args=flags
        )
        cleanup.callback(proc.terminate)
        check = cleanup.enter_context(grpc.insecure_channel(target)).unary_unary(CHECK)
        check(message, timeout=10)  # the legitimate connection is open before the attack
        before = peak = _rss_mb(proc)
        thread, outcomes = hostile.run(hostile.ATTACKS[attack], ("127.0.0.1", listen.port), stop)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            try:
                check(message, timeout=5)
            except grpc.RpcError:
                failed += 1
            latencies.append((time.monotonic() - began) * 1000)
            if not proc.alive():
                raise BenchError(f"{proc.name} died under the {attack} attack:\n{proc.tail()}")
            peak = max(peak, _rss_mb(proc))
            time.sleep(max(0.0, INTERVAL_S - (time.monotonic() - began)))
        stop.set()
        thread.join(15)
        kept = _rss_mb(proc) - before
    outcome, ordered = outcomes[0] if outcomes else hostile.Outcome(), sorted(latencies)
    return HostileResult(
        attack,
        engine,
        checks=len(ordered),
        failed=failed,
        p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        max_ms=ordered[-1],
        rss_growth_mb=peak - before,
        rss_kept_mb=kept,
        cut_off=outcome.cut_off,
        goaway=sorted(set(outcome.goaway)),
        frames_sent=outcome.frames_sent,
    )


def run(*, logs: Path, say: Callable[[str], None]) -> list[HostileResult]:
    results = []
    for engine in ENGINES:
        for attack in hostile.ATTACKS:
            results.append(r := measure(engine, attack, logs=logs))
            say(
                f"hostile {engine:<6} {attack:<20} p99 {r.p99_ms:7.1f} ms, "
                f"RSS +{r.rss_growth_mb:5.1f} MB, cut off: {r.cut_off}"
            )
    return results
