"""The client side of the admin API, shared by `authz explain`, `authz revoke` and `authz blocks`.

Each command is one or two unary calls to authz.v1.Admin on the sidecar's --admin-listen
address. A call that fails becomes a ConfigError (exit 2) saying which: nothing answers there
(the usual mistake: no `authz serve`, or another --admin-listen), or the sidecar refused.
"""

from __future__ import annotations

import argparse
import os
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from authz.errors import ConfigError

DEFAULT_ADMIN = "127.0.0.1:9192"
M = TypeVar("M", bound=Message)


def add_admin_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin",
        default=os.environ.get("AUTHZ_ADMIN_LISTEN", DEFAULT_ADMIN),
        metavar="ADDR",
        help="the sidecar's --admin-listen address (default %(default)s) [env AUTHZ_ADMIN_LISTEN]",
    )


def call(
    args: argparse.Namespace,
    method: str,
    request: Message,
    response: type[M],
    *,
    channel: grpc.Channel | None = None,
) -> M:
    """Call `method` ("/authz.v1.Admin/Name") with the command's --admin and --timeout, on
    `channel`, by default a plaintext one to --admin."""
    admin = args.admin
    with channel or grpc.insecure_channel(admin) as opened:
        rpc = opened.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        try:
            answer: M = rpc(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            # UNAVAILABLE naming the block store comes from a sidecar that did answer.
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and (
                "block store" not in (exc.details() or "")
            ):
                raise ConfigError(
                    f"--admin: no admin API answers at {admin} (is `authz serve` running with "
                    f"--admin-listen {admin}?)"
                ) from None
            raise ConfigError(f"{args.command} failed: {code.name}: {exc.details()}") from None
    return answer
