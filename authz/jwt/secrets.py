"""Client secrets for the introspection endpoint, read from files laid out like a mounted Secret.

A policy names a secret by reference only (`clientSecretRef: {name, key}` in the policy's
namespace), so the secret never sits in the policy, its status or an explanation. The reader
finds it at `DIR/<namespace>/<name>/<key>` - what Kubernetes writes when a Secret is mounted at
`DIR/<namespace>/<name>` - and keeps it for a short while, so a rotated secret is picked up
without a restart and a check does not touch the disk each time. Reading runs in a thread: the
check path never blocks on a file.

Errors name the file and the fix, never the secret's content.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from authz.errors import AuthzError

#: A client secret longer than this is refused (it is a credential, not a document).
MAX_SECRET_BYTES = 4096


class SecretUnavailable(AuthzError):
    """The referenced secret cannot be read; the message says where it was looked for."""

    code = "secret_unavailable"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A key of a Secret in a namespace; the value is never part of the reference."""

    namespace: str
    name: str
    key: str

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}/{self.key}"


def ref_problem(name: str, key: str) -> str | None:
    """Why a reference cannot name a file safely, or None (the CRD's patterns do the rest)."""
    for part in (name, key):
        if part in (".", "..") or "/" in part or "\0" in part:
            return f"{part!r} is not a Secret name or key"
    return None


class SecretReader(Protocol):
    async def read(self, ref: SecretRef, *, now: float) -> str:
        """The secret's value, or raise SecretUnavailable."""


class FileSecrets:
    """Secrets under one directory (--secrets-dir), cached for `ttl` seconds per reference."""

    def __init__(self, root: Path, *, ttl: float = 30.0) -> None:
        self.root = root
        self._ttl = ttl
        self._cache: dict[SecretRef, tuple[float, str]] = {}

    def path(self, ref: SecretRef) -> Path:
        problem = ref_problem(ref.name, ref.key)
        if problem is not None or ref_problem(ref.namespace, "k") is not None:
            raise SecretUnavailable(f"secret {ref.describe()}: {problem or 'bad namespace'}")
        return self.root / ref.namespace / ref.name / ref.key

    async def read(self, ref: SecretRef, *, now: float) -> str:
        cached = self._cache.get(ref)
        if cached is not None and cached[0] > now:
            return cached[1]
        value = await asyncio.to_thread(self._read_file, self.path(ref))
        if len(self._cache) >= 1024:  # references come from policies: few, but bounded anyway
            self._cache.clear()
        self._cache[ref] = (now + self._ttl, value)
        return value

    @staticmethod
    def _read_file(path: Path) -> str:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise SecretUnavailable(
                f"cannot read the client secret at {path} ({exc.strerror or type(exc).__name__}):"
                " mount the Secret there or set --secrets-dir"
            ) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise SecretUnavailable(f"the client secret at {path} is over {MAX_SECRET_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretUnavailable(f"the client secret at {path} is not UTF-8") from None
        # A secret file written by hand often ends with a newline; a mounted one never does.
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise SecretUnavailable(f"the client secret at {path} is empty")
        return text
