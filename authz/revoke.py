"""`authz revoke`: refuse a token, or every token of a subject, on a running sidecar.

    authz revoke --admin ADDR (--jti ID | --subject SUB) [--issuer ISS] [--until UNIX_TIME]
    authz revoke --admin ADDR --list

It calls authz.v1.Admin/Revoke (or ListRevocations) on the sidecar's --admin-listen address. A
revoked jti is refused at once (401 invalid_token); revoking a subject refuses each of its
tokens issued at or before now. `--until` says when the entry may be dropped - when no token it
matches can still be valid; by default the sidecar works it out from maxTokenLifetime. The
answer says whether every replica enforces the revocation or only the one asked, and the
command warns in the second case.
Exit 0 on success, 2 when the sidecar cannot be reached or refuses the request.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TextIO

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.adminclient import add_admin_argument, call

REVOKE = "/authz.v1.Admin/Revoke"
LIST = "/authz.v1.Admin/ListRevocations"
LOCAL_ONLY = (
    "warning: this sidecar keeps revocations in its own memory: other replicas still accept "
    "the token, and a restart forgets it (see README, Opaque tokens and revocation)"
)
HELP = "revoke a token (by jti) or a subject's tokens on a running sidecar"


def add_revoke_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "revoke",
        help=HELP,
        description="Refuse a token by its jti, or every token of a subject issued at or "
        "before now (401 invalid_token), through the admin API. Exit 0 on success, 2 on error.",
    )
    add_admin_argument(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--jti", metavar="ID", help="the token's jti claim")
    what.add_argument("--subject", metavar="SUB", help="the sub claim of the tokens to refuse")
    what.add_argument("--list", action="store_true", help="print the revocations in force")
    parser.add_argument(
        "--issuer", default="", metavar="ISS", help="only tokens of this issuer (default: any)"
    )
    parser.add_argument(
        "--until",
        type=float,
        default=0.0,
        metavar="UNIX_TIME",
        help="keep the entry until then: the latest exp a matching token can have (default: "
        "the longest maxTokenLifetime of the issuers it names, else one day from now)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(entry: apb.Revocation) -> str:
    issuer = entry.issuer or "any issuer"
    if entry.kind == "subject":
        what = f"subject {entry.value} ({issuer}): tokens issued until {_when(entry.revoked_at)}"
    else:
        what = f"jti {entry.value} ({issuer})"
    return f"{what}, kept until {_when(entry.until)}"


def run_revoke(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.list:
        listed = call(args, LIST, apb.ListRevocationsRequest(), apb.ListRevocationsResponse)
        for entry in listed.revocations:
            out.write(describe(entry) + "\n")
        if not listed.revocations:
            out.write("no revocations\n")
        if not listed.shared:
            print(LOCAL_ONLY, file=sys.stderr)
        return 0
    request = apb.RevokeRequest(
        jti=args.jti or "", subject=args.subject or "", issuer=args.issuer, until=args.until
    )
    answer = call(args, REVOKE, request, apb.RevokeResponse)
    out.write("revoked " + describe(answer.revocation) + "\n")
    if not answer.shared:
        print(LOCAL_ONLY, file=sys.stderr)
    return 0
