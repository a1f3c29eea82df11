"""Server-provided DPoP nonces (RFC 9449 section 9), for issuers that ask for them.

A nonce limits how long a proof a client made in advance stays usable: with nonces on, a proof
must carry one the sidecar handed out recently (`DPoP-Nonce` response header; a proof without a
current one gets 401 `use_dpop_nonce` and a fresh nonce to retry with).

The nonces are stateless: a time step and an HMAC of it under a secret, so any process holding
the secret recognises them and nothing is stored per client. A nonce is current during its step
and the next (one proof window each), so a client that fetched one at the end of a step still
has a full window. Processes that answer the same clients need the same secret: `--workers N`
share one the supervisor makes; replicas need AUTHZ_DPOP_NONCE_SECRET.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from typing import Final

_STEP_BYTES: Final = 8
_MAC_BYTES: Final = 16


class Nonces:
    def __init__(self, secret: bytes, *, lifetime: float) -> None:
        if not secret:
            raise ValueError("a nonce secret must not be empty")
        self._secret = secret
        self._lifetime = lifetime

    def _mac(self, step: bytes) -> bytes:
        return hmac.new(self._secret, step, hashlib.sha256).digest()[:_MAC_BYTES]

    def _step(self, now: float) -> int:
        return math.floor(now / self._lifetime)

    def current(self, now: float) -> str:
        """The nonce to hand out now."""
        step = self._step(now).to_bytes(_STEP_BYTES, "big", signed=True)
        return base64.urlsafe_b64encode(step + self._mac(step)).rstrip(b"=").decode("ascii")

    def valid(self, nonce: object, now: float) -> bool:
        """Whether `nonce` is one of ours from this step or the one before."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return False
        if len(raw) != _STEP_BYTES + _MAC_BYTES:
            return False
        step, mac = raw[:_STEP_BYTES], raw[_STEP_BYTES:]
        if not hmac.compare_digest(mac, self._mac(step)):
            return False
        return 0 <= self._step(now) - int.from_bytes(step, "big", signed=True) <= 1
