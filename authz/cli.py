"""Command line: flags and AUTHZ_* environment variables -> Settings -> run.

    authz serve     run the sidecar (ext_authz gRPC + health + HTTP probes)
    authz validate  check policy files offline, through the same code that loads them
    authz explain   ask a running sidecar why a request would be allowed or denied
    authz revoke    refuse a token (jti) or a subject's tokens on a running sidecar
    authz blocks    list or lift the brute-force blocks of a running sidecar
    authz token     DEV ONLY: mint a token signed with the demo key in examples/

`serve`'s flags are derived from the settings' declarations (authz.settings.flags): every one
can also come from AUTHZ_<FLAG_NAME>, and a flag on the command line wins.
Exit codes: 0 success, 1 invalid policies (validate), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from authz import __version__
from authz.blockscli import add_blocks_parser
from authz.devtools import token
from authz.errors import ConfigError
from authz.explain import add_explain_parser
from authz.revoke import add_revoke_parser
from authz.settings import Settings
from authz.settings.flags import Origins, add_arguments, settings_from


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authz",
        description="Authorization sidecar for Envoy ext_authz: JWT bearer tokens, OAuth 2.0 scopes, "
        "header rewrites; policies are AuthPolicy resources (authz.dev/v1alpha1).",
    )
    parser.add_argument("--version", action="version", version=f"authz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the sidecar",
        description="Serve Envoy's ext_authz Check (gRPC), grpc.health.v1, /healthz and /readyz. "
        "Every flag can also be set by the environment variable named in its help.",
    )
    add_arguments(serve)
    validate = sub.add_parser(
        "validate",
        help="check policy files offline",
        description="Validate AuthPolicy files through the same code that loads them. Prints "
        "FILE:DOC_INDEX: field.path: message for every problem (DOC_INDEX counts documents in a "
        "file from 0). Exit 0 when all are valid, 1 otherwise. Keys are not fetched.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    validate.add_argument(
        "--allowed-hosts",
        metavar="FILE",
        help="also refuse hosts outside each namespace's grants, as `authz serve "
        "--allowed-hosts FILE` does",
    )
    add_explain_parser(sub)
    add_revoke_parser(sub)
    add_blocks_parser(sub)
    token.add_arguments(sub.add_parser("token", help=token.HELP, description=token.DESCRIPTION))
    return parser


def serve_settings(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[Settings, Origins]:
    """`authz serve`'s settings from its parsed flags and the environment. Raises ConfigError."""
    settings, origins = settings_from(args, environ)
    if not settings.policies.paths and not settings.kubernetes.enabled:
        raise ConfigError(
            "nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES) and/or --kubernetes"
        )
    return settings, origins


def _serve(args: argparse.Namespace) -> int:
    settings, origins = serve_settings(args, os.environ)
    # The service's imports are most of the time a start takes: a usage error comes before them.
    from authz.app import Service
    from authz.server.eventloop import run
    from authz.telemetry.redact import configure_logging

    configure_logging(settings.telemetry.log_level)
    try:
        return run(Service(settings).run(), event_loop=settings.server.event_loop)
    except ConfigError as exc:  # e.g. a taken port: named as the user set it
        raise origins.rename(exc) from None


def _validate(args: argparse.Namespace) -> int:
    from authz.sources.hostgrants import load_grants
    from authz.sources.validate import validate_paths

    grants = load_grants(Path(args.allowed_hosts)) if args.allowed_hosts else None
    return validate_paths(
        [Path(p) for p in args.paths], quiet=args.quiet, out=sys.stdout, grants=grants
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            return _serve(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "explain":
            from authz.explain import run_explain

            return run_explain(args)
        if args.command == "revoke":
            from authz.revoke import run_revoke

            return run_revoke(args)
        if args.command == "blocks":
            from authz.blockscli import run_blocks

            return run_blocks(args)
        return token.run_token(args)
    except ConfigError as exc:
        print(f"authz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
