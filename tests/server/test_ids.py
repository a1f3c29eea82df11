"""Decision ids and cached allow answers: cheap, but no weaker than what they replaced."""

from __future__ import annotations

import os
import string

from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb
from authz.pipeline.decision import Decision
from authz.server.convert import AllowResponses, to_check_response
from authz.server.ids import DecisionIds


def test_ids_are_16_hex_digits_and_do_not_repeat_across_refills() -> None:
    ids = DecisionIds(batch=4)
    seen = [ids() for _ in range(10_000)]
    assert all(len(i) == 16 and set(i) <= set(string.hexdigits.lower()) for i in seen)
    assert len(set(seen)) == len(seen)


def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    from authz.server.ids import DECISION_IDS

    DECISION_IDS()  # the buffer is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, "".join(DECISION_IDS() for _ in range(4)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1024).decode()
    os.waitpid(pid, 0)
    os.close(read)
    parent = "".join(DECISION_IDS() for _ in range(4))
    assert len(child) == len(parent) == 64
    assert child != parent


def test_cached_allow_answers_equal_fresh_ones_and_the_cache_is_bounded() -> None:
    cache = AllowResponses(size=3)
    decisions = [
        Decision(
            True,
            "allowed",
            200,
            policy="shop/orders",
            rule="read",
            subject=f"user-{i}",
            set_headers=(("x-user-id", f"user-{i}"),),
            remove_headers=("authorization",),
        )
        for i in range(5)
    ]
    for decision in decisions:
        answer = pb.CheckResponse.FromString(cache.get(decision))
        assert answer == to_check_response(decision)
        assert cache.get(decision) is cache.get(decision)  # the same bytes, not rebuilt
    assert len(cache) <= 3
