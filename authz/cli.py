"""Command line: flags and AUTHZ_* environment variables -> Settings -> run.

    authz serve     run the sidecar (ext_authz gRPC + health + HTTP probes)
    authz validate  check policy files offline, through the same code that loads them
    authz explain   ask a running sidecar why a request would be allowed or denied
    authz token     DEV ONLY: mint a token signed with the demo key in examples/

Every `serve` flag can also come from AUTHZ_<FLAG_NAME> (e.g. AUTHZ_GRPC_LISTEN); a flag on the
command line wins over the environment. Repeatable flags take a comma-separated list there.
Exit codes: 0 success, 1 invalid policies (validate), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from authz import __version__
from authz.errors import ConfigError
from authz.settings import (
    ClientSettings,
    JwksSettings,
    KubernetesSettings,
    PolicySettings,
    RateLimitSettings,
    ServerSettings,
    Settings,
    TelemetrySettings,
)

ENV_PREFIX = "AUTHZ_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


def _apply_env(parser: argparse.ArgumentParser) -> None:
    """Use AUTHZ_<FLAG> as each flag's default, and say so in --help."""
    for action in parser._actions:  # argparse offers no public way to walk actions
        long = [o for o in action.option_strings if o.startswith("--")]
        if not long or action.dest == "help":
            continue
        env = _env_name(long[0])
        action.help = f"{action.help or ''} [env {env}]".strip()
        raw = os.environ.get(env)
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            lowered = raw.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ConfigError(f"{env}: expected true or false, got {raw!r}")
            action.default = lowered in _TRUE
        elif isinstance(action, argparse._AppendAction):
            action.default = [item.strip() for item in raw.split(",") if item.strip()]
        else:
            # argparse checks choices on the command line only, never against a default.
            if action.choices is not None and raw not in action.choices:
                options = ", ".join(map(str, action.choices))
                raise ConfigError(f"{env}: expected one of {options}, got {raw!r}")
            action.default = raw


class _AppendOverEnv(argparse._AppendAction):
    """Like "append", except that the first use on the command line replaces a list taken from
    the environment (plain "append" would add to it, and the flag would not win)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if self.default and getattr(namespace, self.dest, None) is self.default:
            setattr(namespace, self.dest, None)
        super().__call__(parser, namespace, values, option_string)


def _serve_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    serve = sub.add_parser(
        "serve",
        help="run the sidecar",
        description="Serve Envoy's ext_authz Check (gRPC), grpc.health.v1, /healthz and /readyz.",
    )
    serve.register("action", "append", _AppendOverEnv)
    serve.add_argument(
        "--policies",
        action="append",
        metavar="PATH",
        help="AuthPolicy file or directory (recursive); repeatable; reloaded on change",
    )
    serve.add_argument(
        "--kubernetes",
        action="store_true",
        help="also serve AuthPolicy resources from the Kubernetes API (watched live; the leader "
        "replica writes their status)",
    )
    serve.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig for --kubernetes (default: in-cluster config, then KUBECONFIG)",
    )
    serve.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="watch AuthPolicies in this namespace only; repeatable (default: all namespaces)",
    )
    serve.add_argument(
        "--selector",
        metavar="LABEL_SELECTOR",
        help="serve only AuthPolicies matching this label selector, e.g. shard=eu",
    )
    serve.add_argument(
        "--lease-name",
        metavar="NAME",
        help="leader-election Lease in POD_NAMESPACE (default: authz-leader, with a suffix "
        "derived from --namespace/--selector so shards elect separately)",
    )
    serve.add_argument(
        "--lease-duration",
        default="15",
        metavar="SECONDS",
        help="a leader that has not renewed for this long is replaced (default %(default)s)",
    )
    serve.add_argument(
        "--grpc-listen",
        default="127.0.0.1:9191",
        metavar="ADDR",
        help="ext_authz + gRPC health: HOST:PORT or unix:/path.sock (default %(default)s)",
    )
    serve.add_argument(
        "--http-listen",
        default="127.0.0.1:9090",
        metavar="ADDR",
        help="/healthz, /readyz and /metrics: HOST:PORT (default %(default)s)",
    )
    serve.add_argument(
        "--admin-listen",
        default="127.0.0.1:9192",
        metavar="ADDR",
        help="admin gRPC API (authz.v1.Admin: Explain, ListPolicies; used by `authz explain`): "
        "HOST:PORT or unix:/path.sock; keep it private (default %(default)s)",
    )
    serve.add_argument(
        "--grpc-server",
        default="h2",
        choices=["h2", "grpcio"],
        help="the check server's engine: h2 (built in, faster) or grpcio (grpcio's asyncio "
        "server) (default %(default)s)",
    )
    serve.add_argument(
        "--event-loop",
        default="uvloop",
        choices=["uvloop", "asyncio"],
        help="the event loop: uvloop (faster) or asyncio's own (default %(default)s)",
    )
    serve.add_argument(
        "--jwks-refresh-interval",
        default="300",
        metavar="SECONDS",
        help="issuer keys are refetched this often even without an unknown kid; a key removed "
        "from a JWKS stops verifying tokens (also cached ones) within this time "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--workers",
        default="1",
        metavar="N",
        help="processes answering checks; N > 1 needs --grpc-listen unix:PATH and gives "
        "worker i the socket PATH with -i before its suffix (default %(default)s)",
    )
    serve.add_argument(
        "--log-allow-sample-rate",
        default="1.0",
        metavar="RATE",
        help="fraction 0..1 of allowed decisions written to the decision log on stdout; "
        "denials are always written (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default %(default)s)",
    )
    _traffic_flags(serve)
    return serve


def _traffic_flags(serve: argparse.ArgumentParser) -> None:
    """Rate-limit backend and client-address flags (README: Rate limits and IP filtering)."""
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="share rate-limit counters between replicas through Redis: redis://[user:pass@]host"
        "[:port][/db] or rediss:// (TLS); default: counters in memory, per process",
    )
    serve.add_argument(
        "--redis-mode",
        default="standalone",
        choices=["standalone", "cluster", "sentinel"],
        help="standalone; cluster (the URL names startup nodes, comma-separated); sentinel (the "
        "URL names the sentinels) (default %(default)s)",
    )
    serve.add_argument(
        "--redis-sentinel-master",
        default="mymaster",
        metavar="NAME",
        help="the master's name in sentinel mode (default %(default)s)",
    )
    serve.add_argument(
        "--redis-timeout-ms",
        default="50",
        metavar="MS",
        help="each Redis call may take at most this long; slower counts as a failure "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--ratelimit-max-buckets",
        default="100000",
        metavar="N",
        help="rate-limit buckets kept in memory at most (least recently used dropped first) "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--trusted-proxy-hops",
        default="0",
        metavar="N",
        help="0: the client address is Envoy's peer address; N: the Nth address from the right "
        "of X-Forwarded-For (default %(default)s)",
    )


def _int_flag(flag: str, raw: str, *, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{flag}: expected a whole number from {low} to {high}, got {raw!r}")
    return value


def traffic_settings(args: argparse.Namespace) -> tuple[RateLimitSettings, ClientSettings]:
    from authz.ratelimit.factory import parse_redis_url

    url = args.redis_url or None
    if url is not None:
        parse_redis_url(url, mode=args.redis_mode)  # refuse a bad URL now (exit 2), not later
    elif args.redis_mode != "standalone":
        raise ConfigError(f"--redis-mode {args.redis_mode} needs --redis-url")
    ratelimit = RateLimitSettings(
        redis_url=url,
        redis_mode=args.redis_mode,
        redis_sentinel_master=args.redis_sentinel_master,
        redis_timeout=_int_flag("--redis-timeout-ms", args.redis_timeout_ms, low=1, high=10_000)
        / 1000,
        max_buckets=_int_flag(
            "--ratelimit-max-buckets", args.ratelimit_max_buckets, low=1, high=100_000_000
        ),
    )
    hops = _int_flag("--trusted-proxy-hops", args.trusted_proxy_hops, low=0, high=64)
    return ratelimit, ClientSettings(trusted_proxy_hops=hops)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authz",
        description="Authorization sidecar for Envoy ext_authz: JWT bearer tokens, OAuth 2.0 scopes, "
        "header rewrites; policies are AuthPolicy resources (authz.dev/v1alpha1).",
    )
    parser.add_argument("--version", action="version", version=f"authz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    validate = sub.add_parser(
        "validate",
        help="check policy files offline",
        description="Validate AuthPolicy files through the same code that loads them. Prints "
        "FILE:DOC_INDEX: field.path: message for every problem (DOC_INDEX counts documents in a "
        "file from 0). Exit 0 when all are valid, 1 otherwise. Keys are not fetched.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    from authz.devtools.token import add_token_parser
    from authz.explain import add_explain_parser

    add_explain_parser(sub)
    add_token_parser(sub)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    from authz.telemetry.redact import install

    for handler in logging.getLogger().handlers:
        install(handler)


def serve_settings(args: argparse.Namespace) -> Settings:
    if not args.policies and not args.kubernetes:
        raise ConfigError(
            "nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES) and/or --kubernetes"
        )
    paths = tuple(Path(p) for p in args.policies or ())
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"--policies: {', '.join(missing)} does not exist")
    ratelimit, client = traffic_settings(args)
    return Settings(
        server=ServerSettings(
            grpc_listen=args.grpc_listen,
            http_listen=args.http_listen,
            admin_listen=args.admin_listen,
            grpc_server=args.grpc_server,
            event_loop=args.event_loop,
            workers=_workers(args.workers, args.grpc_listen),
        ),
        policies=PolicySettings(paths=paths),
        jwks=JwksSettings(
            refresh_interval=_int_flag(
                "--jwks-refresh-interval", args.jwks_refresh_interval, low=1, high=86_400
            )
        ),
        kubernetes=kubernetes_settings(args),
        telemetry=TelemetrySettings(log_allow_sample_rate=_sample_rate(args.log_allow_sample_rate)),
        log_level=args.log_level,
        ratelimit=ratelimit,
        client=client,
    )


def _workers(raw: str, grpc_listen: str) -> int:
    workers = _int_flag("--workers", raw, low=1, high=64)
    if workers > 1 and not grpc_listen.startswith("unix:"):
        raise ConfigError(
            f"--workers {workers} needs --grpc-listen unix:PATH (each worker listens on its own "
            "socket; Envoy balances over them as endpoints of one cluster)"
        )
    return workers


def _sample_rate(raw: str) -> float:
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--log-allow-sample-rate: expected a number from 0 to 1, got {raw!r}")
    return rate


def kubernetes_settings(args: argparse.Namespace) -> KubernetesSettings:
    """--kubernetes and its companions; the pod's identity comes from POD_NAME/POD_NAMESPACE."""
    companions = [
        flag
        for flag, value in (
            ("--kubeconfig", args.kubeconfig),
            ("--namespace", args.namespace),
            ("--selector", args.selector),
            ("--lease-name", args.lease_name),
        )
        if value
    ]
    if not args.kubernetes:
        if companions:
            raise ConfigError(f"{companions[0]} needs --kubernetes")
        return KubernetesSettings()
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else None
    if kubeconfig is not None and not kubeconfig.is_file():
        raise ConfigError(f"--kubeconfig: {kubeconfig} does not exist")
    namespaces = tuple(dict.fromkeys(ns.strip() for ns in args.namespace or () if ns.strip()))
    try:
        duration = float(args.lease_duration)
    except ValueError:
        duration = 0.0
    if not 1.0 <= duration <= 3600.0:
        raise ConfigError(
            f"--lease-duration: expected seconds from 1 to 3600, got {args.lease_duration!r}"
        )
    return KubernetesSettings(
        enabled=True,
        kubeconfig=kubeconfig,
        namespaces=namespaces,
        selector=(args.selector or "").strip() or None,
        identity=os.environ.get("POD_NAME") or None,
        lease_namespace=os.environ.get("POD_NAMESPACE") or None,
        lease_name=args.lease_name or None,
        lease_duration=duration,
    )


def _serve(args: argparse.Namespace) -> int:
    from authz.app import Service
    from authz.server.eventloop import run

    settings = serve_settings(args)
    _configure_logging(settings.log_level)
    return run(Service(settings).run(), event_loop=settings.server.event_loop)


def _validate(args: argparse.Namespace) -> int:
    from authz.sources.validate import validate_paths

    return validate_paths([Path(p) for p in args.paths], quiet=args.quiet, out=sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            for name, subparser in getattr(action, "choices", {}).items():
                if name == "serve":
                    _apply_env(subparser)
        args = parser.parse_args(argv)
        if args.command == "serve":
            return _serve(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "explain":
            from authz.explain import run_explain

            return run_explain(args)
        from authz.devtools.token import run_token

        return run_token(args)
    except ConfigError as exc:
        print(f"authz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
