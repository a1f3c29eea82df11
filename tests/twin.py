"""`python -m tests.twin CORPUS`: runs a corpus through the check path and prints, as JSON,
everything that came out - the servicer's answers to serialized CheckRequests and the h2
engine's bytes for raw frame sequences. tests/test_compiled.py runs it once compiled and once
from source (AUTHZ_PURE_PYTHON=1) and compares."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from authz import compiled
from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.jwt.providers import offline_provider
from authz.jwt.verify import Verifier
from authz.policy.store import PolicyStore, SourceDocument
from authz.ratelimit.memory import MemoryLimiter
from authz.server.grpcwire import Metadata, RpcError
from authz.server.h2conn import Connection
from authz.server.h2limits import DEFAULTS, Clock
from authz.server.h2server import CHECK
from authz.server.servicer import AuthorizationServicer

#: Decision ids are random: the same length of zeros instead, so both runs compare.
DECISION_ID = re.compile(rb"[0-9a-f]{16}")


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _echo(message: bytes, _metadata: Metadata, _send: object) -> bytes:
    return b"echo:" + message[:16]


async def frames(sequence: bytes) -> dict[str, Any]:
    """What the h2 engine writes for `sequence` on a fresh connection, and whether it closed."""
    transport = Transport()
    connection = Connection(
        {CHECK: _echo},
        limits=DEFAULTS,
        clock=Clock(),
        on_close=lambda *_: None,
        on_idle=lambda *_: None,
    )
    connection.connection_made(transport)
    connection.data_received(sequence)
    return {"written": transport.written.hex(), "closed": transport.closed}


async def answers(corpus: dict[str, Any]) -> list[str]:
    store = PolicyStore(bind=offline_provider, publish=lambda _snapshot: None)
    documents = [SourceDocument(f"twin-{i}", d) for i, d in enumerate(corpus["policies"])]
    snapshot = store.update("twin", documents)
    servicer = AuthorizationServicer(
        snapshot=lambda: snapshot, verifier=Verifier(), limiter=MemoryLimiter()
    )
    out = []
    for message in corpus["checks"]:
        try:
            answer = servicer.check_wire(base64.b64decode(message), (), lambda _data: None)
            result = (await answer) if inspect.isawaitable(answer) else answer
            # Map fields (the metadata Struct) serialize in no fixed order: sort them.
            canonical = pb.CheckResponse.FromString(result).SerializeToString(deterministic=True)
            out.append(DECISION_ID.sub(b"0" * 16, canonical).hex())
        except RpcError as error:
            out.append(f"error {error.status} {error.message}")
    return out


async def run(corpus: dict[str, Any]) -> dict[str, Any]:
    return {
        "compiled": compiled.COMPILED,
        "answers": await answers(corpus),
        "frames": [await frames(base64.b64decode(s)) for s in corpus["frames"]],
    }


def main(path: str) -> None:
    corpus = json.loads(Path(path).read_text())
    json.dump(asyncio.run(run(corpus)), sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
