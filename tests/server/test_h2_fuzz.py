"""Fuzz the built-in HTTP/2 check server in a real sidecar process: random frame sequences, some
after a valid preface and some with real HPACK header blocks, must never take the process down
or stop it from answering a well-formed Check on the next connection."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.server.h2frames import PREFACE
from tests.support.grpcclient import CHECK_HEADERS, CheckClient, check_request
from tests.support.policies import auth_policy, write_policies
from tests.support.procs import Proc, start_sidecar
from tests.support.tiers import examples

POLICY = auth_policy("open", namespace="fuzz", hosts=["fuzz.test"])


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    proc, grpc_address, _ = start_sidecar(tmp, [write_policies(tmp / "p.yaml", POLICY)])
    yield proc, grpc_address
    assert proc.terminate() == 0
    assert "Traceback" not in proc.output()  # every bad frame was handled, none escaped


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    length = len(payload)
    return struct.pack(">BHBBI", length >> 16, length & 0xFFFF, kind, flags, stream) + payload


payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda: hpack.Encoder().encode(CHECK_HEADERS)),
    st.builds(lambda n: b"\x00\x00\x00\x0a" + n.to_bytes(4, "big"), st.integers(0, 2**32 - 1)),
    st.builds(lambda b: b"\x00" + len(b).to_bytes(4, "big") + b, st.binary(max_size=32)),
)
frames = st.builds(
    _frame,
    st.one_of(st.integers(0, 9), st.integers(10, 255)),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 - 1]),
    payloads,
)


def _send(address: str, data: bytes) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.settimeout(0.3)
        with contextlib.suppress(OSError):
            sock.sendall(data)
            while sock.recv(65536):
                pass


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(preface=st.booleans(), sequence=st.lists(frames, max_size=8))
def test_random_frames_never_take_the_server_down(
    sidecar: tuple[Proc, str], preface: bool, sequence: list[bytes]
) -> None:
    proc, address = sidecar
    _send(address, (PREFACE if preface else b"") + b"".join(sequence))
    assert proc.alive(), proc.output()[-2000:]
    client = CheckClient(address)
    try:
        answer = client.check(check_request(host="fuzz.test"), timeout=5)
    finally:
        client.close()
    assert answer.status.code == 0
    assert answer.WhichOneof("http_response") == "ok_response"
