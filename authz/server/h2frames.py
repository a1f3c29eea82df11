"""HTTP/2 frames (RFC 9113 section 4 and 6) as the h2 gRPC server writes them: constants and bytes.

Answers use precomputed header blocks. HPACK (RFC 7541) lets an encoder refer only to the
static table and add nothing to the dynamic one ("literal without indexing"); such a block
means the same whatever the peer's decoder state, so the blocks of a gRPC answer are built
once, here, instead of being encoded per call.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER = struct.Struct(">BHBBI")  # length (24 bits as 8 + 16), type, flags, stream id
HEADER_BYTES = HEADER.size
#: The largest frame we accept (the protocol's default; we never raise it).
MAX_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535


class Type(IntEnum):
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


class Flag:
    END_STREAM: Final = 0x1
    ACK: Final = 0x1
    END_HEADERS: Final = 0x4
    PADDED: Final = 0x8
    PRIORITY: Final = 0x20


class Error(IntEnum):
    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 5
    FRAME_SIZE_ERROR = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    COMPRESSION_ERROR = 9
    ENHANCE_YOUR_CALM = 11


class Setting(IntEnum):
    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5
    MAX_HEADER_LIST_SIZE = 6


class ConnectionError_(Exception):
    """The peer broke the protocol: GOAWAY with `code`, then close."""

    def __init__(self, code: Error, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def frame(kind: Type, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return HEADER.pack(size >> 16, size & 0xFFFF, kind, flags, stream_id) + payload


def settings(values: dict[Setting, int]) -> bytes:
    return frame(Type.SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in values.items()))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(Type.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id: int, code: Error) -> bytes:
    return frame(Type.RST_STREAM, 0, stream_id, struct.pack(">I", code))


def goaway(last_stream_id: int, code: Error) -> bytes:
    return frame(Type.GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code))


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with `first` holding the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    return _integer(len(value), 7, 0) + value  # no Huffman coding


def literal(name: bytes, value: bytes) -> bytes:
    """A header field as a literal without indexing, with a literal name (RFC 7541 6.2.2)."""
    return b"\x00" + _string(name) + _string(value)


#: ":status: 200" is entry 8 of the static table; content-type's name is entry 31.
STATUS_200 = b"\x88"
CONTENT_TYPE_GRPC = _integer(31, 4, 0) + _string(b"application/grpc")
RESPONSE_HEADERS = STATUS_200 + CONTENT_TYPE_GRPC
OK_TRAILERS = literal(b"grpc-status", b"0")
