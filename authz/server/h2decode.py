"""Request header blocks of one HTTP/2 connection: HPACK-decoded, measured, and remembered.

Every header block must be decoded, in order, even a refused stream's: HPACK's dynamic table is
shared by the connection. Decoding is where a small block can turn big (a one-byte field that
refers to a large dynamic-table entry), so the block is measured as it decodes (hpack's own
limit, in RFC 7541 units: name + value + 32 per field) and by its field count, and its decoded
size is what the stream is charged (authz.server.h2limits).

Envoy sends the same block for every check (after the first few, its fields refer to the
dynamic table or are literals that are not added to it). Decoding such a block leaves the table
as it was, so while the table does not change the block means the same: its result is kept,
keyed by its bytes, and any block that changes the table empties the cache. Only small blocks
are kept, so the cache stays small whatever a peer sends.
"""

from __future__ import annotations

import hpack

from authz.server.grpcwire import Metadata
from authz.server.h2frames import ConnectionError_, Error

#: What a request's header block says: (:path, content-type, custom metadata, decoded size).
Request = tuple[bytes, bytes, Metadata, int]
#: Decoded header blocks kept per connection, and the largest block kept.
_CACHE_ENTRIES = 64
_CACHE_BLOCK_BYTES = 1024
#: RFC 7541's per-field overhead in a header list's size.
_FIELD_OVERHEAD = 32


class HeaderDecoder:
    """Decodes the request header blocks of one connection (see the module docstring)."""

    __slots__ = ("_blocks", "_decoder", "_max_fields")

    def __init__(self, *, max_list_size: int, max_fields: int) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_list_size)
        self._blocks: dict[bytes, Request] = {}
        self._max_fields = max_fields

    def decode(self, block: bytes) -> Request:
        """(path, content-type, metadata, decoded size); hpack.HPACKError for a bad block,
        ConnectionError_ for one with too many fields."""
        known = self._blocks.get(block)
        if known is not None:
            return known
        table = self._decoder.header_table.dynamic_entries
        before = tuple(table)
        headers = list(self._decoder.decode(block, raw=True))
        if len(headers) > self._max_fields:
            raise ConnectionError_(
                Error.ENHANCE_YOUR_CALM, f"a header block of {len(headers)} fields"
            )
        path = content_type = b""
        size = 0
        custom: list[tuple[str, str]] = []
        for name, value in headers:
            size += len(name) + len(value) + _FIELD_OVERHEAD
            if name == b":path":
                path = value
            elif name == b"content-type":
                content_type = value
            elif not name.startswith(b":"):
                custom.append((name.decode("latin-1"), value.decode("latin-1")))
        request = (path, content_type, tuple(custom), size)
        if tuple(table) != before:
            self._blocks.clear()
        elif len(block) <= _CACHE_BLOCK_BYTES:
            if len(self._blocks) >= _CACHE_ENTRIES:
                self._blocks.clear()
            self._blocks[block] = request
        return request

    def clear(self) -> None:
        """Drop what is remembered (the connection closed)."""
        self._blocks.clear()
        self._decoder = hpack.Decoder(max_header_list_size=0)
