"""gRPC over HTTP/2, the parts above the HTTP/2 framing: status codes, message frames, headers.

What the h2 engine (authz.server.h2conn) speaks, per the gRPC wire protocol ("PROTOCOL-HTTP2"
in grpc/grpc): a request is HEADERS (POST, content-type application/grpc...) plus DATA holding
length-prefixed messages; a response is HEADERS (:status 200), DATA, and trailers carrying
grpc-status and grpc-message. A call that fails before answering gets "trailers-only": one
HEADERS frame with the status, ending the stream.

Messages are always uncompressed here (identity encoding): nothing we answer is worth
compressing, and Envoy's ext_authz client does not compress requests unless told to.
"""

from __future__ import annotations

import struct
import urllib.parse
from enum import IntEnum

from authz.server.h2frames import RESPONSE_HEADERS, literal

#: The largest request message accepted (grpcio's default, and what the server had before).
MAX_MESSAGE_BYTES = 1024 * 1024
_PREFIX = struct.Struct(">BI")
#: The size of a message's prefix: a compressed flag and a big-endian length.
PREFIX_BYTES = _PREFIX.size

#: Request metadata as grpcio hands it to servicers: lower-case names, text values.
Metadata = tuple[tuple[str, str], ...]


class Status(IntEnum):
    """google.rpc.Code values used by this server."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


class RpcError(Exception):
    """Ends a call with a non-OK status; the message goes to the client (keep it generic)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def frame(message: bytes) -> bytes:
    """One length-prefixed, uncompressed message."""
    return _PREFIX.pack(0, len(message)) + message


def unframe(body: bytes | bytearray) -> bytes:
    """The single message of a unary request's body; RpcError for anything else."""
    if len(body) < PREFIX_BYTES:
        raise RpcError(Status.INTERNAL, "the request has no complete message")
    compressed, length = _PREFIX.unpack_from(body)
    if compressed:
        raise RpcError(Status.UNIMPLEMENTED, "compressed messages are not supported")
    if len(body) != PREFIX_BYTES + length:
        raise RpcError(Status.UNIMPLEMENTED, "a unary call carries exactly one message")
    return bytes(body[PREFIX_BYTES:])


def trailers(status: Status, message: str = "") -> bytes:
    """The header block of grpc-status and a percent-encoded grpc-message (the spec's)."""
    block = literal(b"grpc-status", str(int(status)).encode())
    if message:
        block += literal(b"grpc-message", urllib.parse.quote(message, safe=" ").encode("ascii"))
    return block


def trailers_only(status: Status, message: str) -> bytes:
    """The header block of a call that fails before answering: one HEADERS frame."""
    return RESPONSE_HEADERS + trailers(status, message)
