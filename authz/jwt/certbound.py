"""The thumbprint of the client certificate Envoy saw (RFC 8705 certificate-bound tokens).

A certificate-bound token carries `cnf["x5t#S256"]`: base64url(SHA-256(DER of the client
certificate)). Envoy forwards the downstream peer's certificate in the check request
(`attributes.source.certificate`, URL-encoded PEM) when its ext_authz filter has
`include_peer_certificate: true` and the listener asked the client for one. The value is parsed
with `cryptography`, so only one well-formed certificate counts: garbage, a truncated PEM or
anything oversized is refused, never hashed as it is.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from authz.errors import TokenError
from authz.jwt.dpop import b64url

#: A client certificate is a few kilobytes; a longer value is refused before decoding.
MAX_CERTIFICATE_BYTES: Final = 16 * 1024
_BEGIN = "-----BEGIN CERTIFICATE-----"


def certificate_thumbprint(forwarded: str, *, max_bytes: int = MAX_CERTIFICATE_BYTES) -> str:
    """x5t#S256 of the URL-encoded PEM certificate Envoy forwarded; TokenError when unusable."""
    if not forwarded:
        raise TokenError("no client certificate was presented")
    if len(forwarded) > max_bytes:
        raise TokenError("the client certificate is too large")
    try:
        pem = urllib.parse.unquote(forwarded, errors="strict")
    except UnicodeError:
        raise TokenError("the client certificate cannot be read") from None
    if pem.count(_BEGIN) != 1:
        raise TokenError("the client certificate is not one PEM certificate")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode("ascii"))
        der = certificate.public_bytes(Encoding.DER)
    except (ValueError, UnicodeError):
        raise TokenError("the client certificate cannot be read") from None
    return b64url(hashlib.sha256(der).digest())
