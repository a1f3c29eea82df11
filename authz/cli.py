"""Command line: flags and AUTHZ_* environment variables -> Settings -> run.

    authz serve     run the sidecar (ext_authz gRPC + health + HTTP probes)
    authz validate  check policy files offline, through the same code that loads them
    authz token     DEV ONLY: mint a token signed with the demo key in examples/

Every `serve` flag can also come from AUTHZ_<FLAG_NAME> (e.g. AUTHZ_GRPC_LISTEN); a flag on the
command line wins over the environment. Repeatable flags take a comma-separated list there.
Exit codes: 0 success, 1 invalid policies (validate), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from authz import __version__
from authz.errors import ConfigError
from authz.settings import PolicySettings, ServerSettings, Settings

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
            action.default = raw


def _serve_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    serve = sub.add_parser(
        "serve",
        help="run the sidecar",
        description="Serve Envoy's ext_authz Check (gRPC), grpc.health.v1, /healthz and /readyz.",
    )
    serve.add_argument(
        "--policies",
        action="append",
        metavar="PATH",
        help="AuthPolicy file or directory (recursive); repeatable; reloaded on change",
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
        help="/healthz and /readyz: HOST:PORT (default %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default %(default)s)",
    )
    return serve


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

    add_token_parser(sub)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def serve_settings(args: argparse.Namespace) -> Settings:
    if not args.policies:
        raise ConfigError("nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES)")
    paths = tuple(Path(p) for p in args.policies)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"--policies: {', '.join(missing)} does not exist")
    return Settings(
        server=ServerSettings(grpc_listen=args.grpc_listen, http_listen=args.http_listen),
        policies=PolicySettings(paths=paths),
        log_level=args.log_level,
    )


def _serve(args: argparse.Namespace) -> int:
    from authz.app import Service

    settings = serve_settings(args)
    _configure_logging(settings.log_level)
    return asyncio.run(Service(settings).run())


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
        from authz.devtools.token import run_token

        return run_token(args)
    except ConfigError as exc:
        print(f"authz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
