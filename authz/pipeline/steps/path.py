"""The path step: one safe normal form of the request path for the rules to match, or 400.

Envoy does not normalize paths unless told to, and upstreams disagree on how they decode, so
the sidecar matches rules against one safe normal form: query and fragment dropped,
percent-encoded unreserved characters decoded (RFC 3986 2.3), other escapes kept with upper-case
hex, "." and ".." resolved, "//" merged. Anything whose meaning depends on the upstream - an
encoded "/" or "\\", a raw backslash, NUL or control characters, ".." above the root, a broken
escape - is refused instead of guessed.

Three more readings differ between upstreams and are refused too: an escaped "%" followed by two
hex digits (an upstream that decodes twice turns "%252e" into "."), an encoded ";" (servlet
containers cut a path parameter at it, so "..%3b" becomes ".."), and escapes that do not decode
to valid UTF-8 (overlong forms such as "%c0%ae" are "." to a lenient decoder).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from authz.errors import PathError
from authz.pipeline import decision as d
from authz.pipeline.context import Context
from authz.pipeline.decision import Decision

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN_ESCAPES = frozenset({0x2F, 0x5C, 0x00})
_HEX = frozenset("0123456789abcdefABCDEF")
#: In a path decoded once, an escape can only have come from "%25": a second decoding changes it.
_ESCAPE_AFTER_DECODING = re.compile(rb"%[0-9a-fA-F]{2}")
_SEMICOLON = 0x3B
_ESCAPE = re.compile(r"%(..)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _decode(match: re.Match[str]) -> str:
    hexpair = match.group(1)
    if hexpair is None or not all(c in _HEX for c in hexpair):
        raise PathError("the path contains a broken percent-escape")
    byte = int(hexpair, 16)
    if byte in _FORBIDDEN_ESCAPES:
        raise PathError("the path contains an encoded slash, backslash or NUL")
    if byte == _SEMICOLON:
        raise PathError("the path contains an encoded semicolon")
    if byte in _UNRESERVED:
        return chr(byte)
    return "%" + hexpair.upper()


def normalize_path(raw: str) -> str:
    """The normal form of a request path (without query). Raises PathError when unsafe."""
    path = raw.partition("?")[0].partition("#")[0]
    if not path.startswith("/"):
        raise PathError("the path must start with /")
    if _CONTROL.search(path):
        raise PathError("the path contains a backslash or control characters")
    if "%" in path:
        try:
            decoded = unquote_to_bytes(path)
            decoded.decode("utf-8")
        except UnicodeError:  # a byte sequence no decoder agrees on, or a lone surrogate
            raise PathError("the path's percent-escapes are not valid UTF-8") from None
        if _ESCAPE_AFTER_DECODING.search(decoded):
            raise PathError("the path is percent-encoded twice")
        path = _ESCAPE.sub(_decode, path)
    if "//" not in path and "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")[1:]
    for segment in segments:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not out:
                raise PathError("the path climbs above the root")
            out.pop()
        else:
            out.append(segment)
    trailing = segments[-1] in ("", ".", "..") and bool(out)
    return "/" + "/".join(out) + ("/" if trailing else "")


def normalize(ctx: Context) -> Decision | None:
    try:
        ctx.path = normalize_path(ctx.request.raw_path)
    except PathError as exc:
        ctx.trace.add("path", "fail", "{}", exc)
        return d.invalid_path(str(exc))
    ctx.trace.add("path", "pass", "normalized to {!r}", ctx.path)
    return None
