"""The connection settings reach the h2 engine of a real sidecar, in one process and in each
worker of --workers N: a connection past --max-connections is closed before a single frame,
while the ones within it get the server's SETTINGS (which also carry --max-concurrent-streams
and --max-header-list-size)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.support.policies import auth_policy, write_policies
from tests.support.procs import start_sidecar

POLICY = auth_policy("open", namespace="settings")
LIMITS = [
    "--max-connections",
    "2",
    "--max-concurrent-streams",
    "7",
    "--max-header-list-size",
    "4096",
]


def _connect(address: str) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address.removeprefix("unix:"))
    else:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock


def _server_settings(sock: socket.socket) -> dict[int, int]:
    """The server's first frame, its SETTINGS, as {parameter: value}; {} if it closed instead."""
    header = b""
    while len(header) < 9:
        chunk = sock.recv(9 - len(header))
        if not chunk:
            return {}
        header += chunk
    high, low, kind, _flags, _stream = struct.unpack(">BHBBI", header)
    assert kind == 4
    payload = b""
    while len(payload) < (high << 16 | low):
        payload += sock.recv((high << 16 | low) - len(payload))
    return dict(struct.iter_unpack(">HI", payload))


def _assert_limited(address: str) -> None:
    held = [_connect(address) for _ in range(2)]
    for sock in held:
        assert _server_settings(sock) == {3: 7, 4: 16 * 1024 * 1024, 6: 4096}
    past = _connect(address)
    assert _server_settings(past) == {}  # closed before a single frame
    for sock in [*held, past]:
        sock.close()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    return write_policies(tmp_path / "p.yaml", POLICY)


def test_one_process_applies_the_limits(tmp_path: Path, policy: Path) -> None:
    proc, address, _ = start_sidecar(tmp_path, [policy], extra=LIMITS)
    try:
        _assert_limited(address)
    finally:
        assert proc.terminate() == 0


def test_each_worker_applies_the_limits(tmp_path: Path, policy: Path) -> None:
    listen = f"unix:{tmp_path / 'authz.sock'}"
    proc, _, _ = start_sidecar(
        tmp_path, [policy], grpc_listen=listen, extra=[*LIMITS, "--workers", "2"]
    )
    try:
        for worker in range(2):
            _assert_limited(f"unix:{tmp_path / f'authz-{worker}.sock'}")
    finally:
        assert proc.terminate() == 0
