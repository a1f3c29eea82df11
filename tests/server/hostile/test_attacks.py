"""Hostile clients against a real sidecar process on the h2 engine: each attack is cut off, a
legitimate client on its own connection keeps getting answers all along, and the process does
not grow without bound.

The attacks are raw frames (tests/support/hostile.py). The sidecar runs with short deadlines so
that the ones that end attacks by time (handshake, stream) do so within a test's patience; the
limits that end attacks by count (resets, control frames, CONTINUATION frames, header bytes)
keep their defaults. Figures (latency under attack, RSS growth, grpcio beside us) belong to the
bench's "hostile" section; here only outcomes are asserted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from tests.support import hostile
from tests.support.grpcclient import CheckClient, check_request
from tests.support.policies import auth_policy, write_policies
from tests.support.procs import Proc, start_sidecar
from tests.support.wait import wait_for

POLICY = auth_policy("open", namespace="hostile")
#: Connections the sidecar accepts; the half-preface attack opens more.
MAX_CONNECTIONS = 100
#: Growth of the sidecar's RSS an attack may cause: generous, far below what the attacks
#: reached before they were bounded.
RSS_GROWTH_MAX = 64 * 1024 * 1024
OK = 0


@dataclass
class Sidecar:
    proc: Proc
    target: tuple[str, int]
    client: CheckClient

    def check(self) -> None:
        response: pb.CheckResponse = self.client.check(check_request(host="open.test"))
        assert response.status.code == OK, response

    def rss(self) -> int:
        return hostile.rss_bytes(self.proc.popen.pid)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    tmp = tmp_path_factory.mktemp("hostile")
    proc, address, _ = start_sidecar(
        tmp,
        [write_policies(tmp / "p.yaml", POLICY)],
        extra=[
            "--grpc-server",
            "h2",
            "--handshake-timeout",
            "1",
            "--stream-timeout",
            "1",
            "--max-connections",
            str(MAX_CONNECTIONS),
        ],
    )
    host, _, port = address.rpartition(":")
    client = CheckClient(address)
    running = Sidecar(proc, (host, int(port)), client)
    running.check()  # the legitimate connection is open before any attack
    yield running
    client.close()
    assert proc.terminate() == 0
    assert "Traceback" not in proc.output()


def attack(sidecar: Sidecar, name: str) -> tuple[hostile.Outcome, int]:
    """Run attack `name` to its end, checking all along; (its outcome, the RSS growth seen)."""
    before = peak = sidecar.rss()
    stop = threading.Event()
    thread, outcomes = hostile.run(hostile.ATTACKS[name], sidecar.target, stop)

    def ended() -> bool:
        nonlocal peak
        sidecar.check()  # a legitimate client on its own connection is answered meanwhile
        peak = max(peak, sidecar.rss())
        return bool(outcomes)

    try:
        wait_for(ended, what=f"the {name} attack to be cut off")
    finally:
        stop.set()
        thread.join(10)
    sidecar.check()
    return outcomes[0], peak - before


def test_hpack_expansion_is_charged_what_it_decodes_to(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "hpack-expansion")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM] * outcome.connections
    assert growth < RSS_GROWTH_MAX


def test_hpack_expansion_on_twenty_connections_is_bounded_too(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "hpack-expansion-20")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM] * outcome.connections
    assert growth < RSS_GROWTH_MAX


def test_continuation_flood_is_cut_off(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "continuation-flood")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM]
    assert growth < RSS_GROWTH_MAX


def test_rapid_reset_is_cut_off(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "rapid-reset")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM]
    assert growth < RSS_GROWTH_MAX


def test_settings_and_ping_flood_without_reading_is_cut_off(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "settings-ping-flood")
    assert outcome.cut_off  # it never reads: the close is all it sees
    assert growth < RSS_GROWTH_MAX


def test_window_overflow_is_a_flow_control_error(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "window-overflow")
    assert outcome.cut_off
    assert hostile.FLOW_CONTROL_ERROR in outcome.resets  # a stream's window: that stream
    assert outcome.goaway == [hostile.FLOW_CONTROL_ERROR]  # the connection's: the connection
    assert growth < RSS_GROWTH_MAX


def test_half_prefaces_are_closed_by_the_cap_and_the_handshake_deadline(
    sidecar: Sidecar,
) -> None:
    outcome, growth = attack(sidecar, "half-prefaces")
    assert outcome.connections > MAX_CONNECTIONS
    assert outcome.cut_off
    assert growth < RSS_GROWTH_MAX


def test_requests_that_never_complete_are_reset(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "stalled-streams")
    assert outcome.resets == [hostile.CANCEL] * 200
    assert growth < RSS_GROWTH_MAX


def test_answers_the_peer_never_takes_are_dropped(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "zero-window")
    assert outcome.resets == [hostile.CANCEL] * 100
    assert growth < RSS_GROWTH_MAX


def test_a_header_block_of_too_many_fields_is_cut_off(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "many-fields")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM]
    assert growth < RSS_GROWTH_MAX


def test_unfinished_bodies_are_budgeted(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "body-hoard")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM]
    assert growth < RSS_GROWTH_MAX


def test_a_flood_of_empty_frames_is_cut_off(sidecar: Sidecar) -> None:
    outcome, growth = attack(sidecar, "empty-frames")
    assert outcome.cut_off
    assert outcome.goaway == [hostile.ENHANCE_YOUR_CALM]
    assert growth < RSS_GROWTH_MAX
