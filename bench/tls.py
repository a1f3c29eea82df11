"""What TLS on the check listener costs: Envoy calling the sidecar over plaintext, TLS and mutual
TLS on loopback, side by side under wrk, interleaved as the main load test runs its setups.

The three sidecars are the h2 engine over TCP with the same policy; only `--tls-cert` (and
`--tls-client-ca`) and Envoy's transport socket differ (authz.devtools.envoyconf.upstream_tls,
the configuration docs/tls.md shows). The probes prove each one answers allow and deny through
TLS; a sidecar whose handshake failed would deny everything and fail them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.macro import MacroConfig, load_test
from bench.material import Material
from bench.results import LoadResult
from bench.setups import Auth, Setup
from bench.stack import stack

PLAIN, TLS, MTLS = "tls-off", "tls", "mtls"
#: TLS may cost at most this fraction of plaintext throughput.
MAX_THROUGHPUT_LOSS = 0.15
SETUPS: tuple[Setup, ...] = (
    Setup(PLAIN, "sidecar over TCP, plaintext", Auth.EXT_AUTHZ, "tcp"),
    Setup(TLS, "the same over TLS (--tls-cert)", Auth.EXT_AUTHZ, "tcp", tls=True),
    Setup(
        MTLS,
        "the same over mutual TLS (--tls-client-ca)",
        Auth.EXT_AUTHZ,
        "tcp",
        tls=True,
        mutual_tls=True,
    ),
)


def run_load(
    material: Material, *, config: MacroConfig, logs: Path, say: Callable[[str], None]
) -> LoadResult:
    """The three sidecars under wrk, interleaved."""
    with stack(
        SETUPS, material=material, envoy_concurrency=config.envoy_concurrency, logs=logs
    ) as current:
        return load_test(current, material=material, config=config, logs=logs, say=say)
