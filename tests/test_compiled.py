"""The compiled check path (setup.py, mypyc) and its Python source give the same answers.

`make test` builds the compiled modules and this suite runs on them; here a corpus - policies,
CheckRequests good and bad, random HTTP/2 frame sequences - goes through both, each in a
process of its own (tests/twin.py), and every byte that comes out must be the same.
"""

from __future__ import annotations

import base64
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import hpack

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.compiled import PURE_ENV
from authz.server.h2frames import PREFACE, Type, frame, settings
from tests.support.grpcclient import CHECK_HEADERS, check_request
from tests.support.keys import claims, rsa_key
from tests.support.policies import ORDERS_HEADERS, auth_policy, issuer, rule

ROOT = Path(__file__).resolve().parent.parent
KEY, OTHER = rsa_key(), rsa_key()
POLICY = auth_policy(
    "orders",
    hosts=["orders.test", "*.shop.test"],
    issuers=[issuer(keys=[KEY])],
    rules=[
        rule("public", paths=["/public/**"], anonymous=True),
        rule("read", paths=["/orders/{id}", "/orders"], methods=["GET"], scopes=["orders:read"]),
        rule("write", paths=["/orders/**"], methods=["POST"], any_of=["orders:write", "admin"]),
    ],
    response={"setHeaders": list(ORDERS_HEADERS), "removeHeaders": ["x-internal"]},
)
TOKENS = {
    "valid": KEY.sign(claims(org={"tenant": "t1"}, roles=["a", "b"])),
    "writer": KEY.sign(claims(scope="orders:write")),
    "no-scope": KEY.sign(claims(scope="")),
    "expired": KEY.sign(claims(ttl=-3600)),
    "forged": OTHER.sign(claims()),
    "garbage": "not.a.token",
}
HOSTS = ["orders.test", "ORDERS.test:443", "a.shop.test", "unknown.test", ""]
PATHS = ["/orders", "/orders/7", "/orders/7?x=1", "/public/a", "/%2e%2e/orders", "/orders/%zz"]


def _checks(rng: random.Random) -> list[bytes]:
    requests = []
    for token in [None, *TOKENS.values()]:
        for host in HOSTS:
            for path in PATHS:
                headers = {"authorization": f"Bearer {token}"} if token else {}
                method = rng.choice(["GET", "POST", "DELETE"])
                request = check_request(host=host, path=path, method=method, headers=headers)
                requests.append(request.SerializeToString())
    return [*requests, b"", b"\xff\x00\x01", pb.CheckRequest().SerializeToString()]


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """Any frame, unknown types included (h2frames.frame takes known types only)."""
    size = len(payload)
    return struct.pack(">BHBBI", size >> 16, size & 0xFFFF, kind, flags, stream) + payload


def _frame_sequences(rng: random.Random) -> list[bytes]:
    block = hpack.Encoder().encode(CHECK_HEADERS)
    message = b"\x00" + (5).to_bytes(4, "big") + b"hello"
    good = frame(Type.HEADERS, 0x4, 1, block) + frame(Type.DATA, 0x1, 1, message)
    start = PREFACE + settings({})
    sequences = [start + good, start, PREFACE[:7], b"garbage" * 4]
    for _ in range(300):
        parts = [start] if rng.random() < 0.8 else []
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice([*range(10), rng.randint(10, 255)])
            payload = rng.choice([block, message, rng.randbytes(rng.randint(0, 40))])
            stream = rng.choice([0, 1, 2, 3, 5, 2**31 - 1])
            parts.append(_frame(kind, rng.randint(0, 255), stream, payload))
        sequences.append(b"".join(parts))
    return sequences


def _run(corpus: Path, *, pure: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "tests.twin", str(corpus)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_compiled_and_source_answer_alike(tmp_path: Path, compiled_check_path: None) -> None:
    rng = random.Random(20261201)
    corpus = tmp_path / "corpus.json"
    corpus.write_text(
        json.dumps(
            {
                "policies": [POLICY],
                "checks": [base64.b64encode(c).decode() for c in _checks(rng)],
                "frames": [base64.b64encode(s).decode() for s in _frame_sequences(rng)],
            }
        )
    )
    compiled, source = _run(corpus, pure=False), _run(corpus, pure=True)
    assert (compiled["compiled"], source["compiled"]) == (True, False)
    # The corpus reaches allows, denials and errors, and frames that close the connection.
    allowed = sum(not a.startswith("error") and len(a) > 200 for a in source["answers"])
    assert 0 < allowed < len(source["answers"])
    closed = [f["closed"] for f in source["frames"]]
    assert any(closed)
    assert not all(closed)
    for i, (one, other) in enumerate(zip(compiled["answers"], source["answers"], strict=True)):
        assert one == other, f"check {i}: compiled {one!r} != source {other!r}"
    for i, (one, other) in enumerate(zip(compiled["frames"], source["frames"], strict=True)):
        assert one == other, f"frame sequence {i}: compiled {one!r} != source {other!r}"
