"""The supervisor's pieces that need no process: metrics merging, socket naming, stdout lines."""

from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from authz.telemetry.metrics import Metrics
from authz.workers.metrics import render
from authz.workers.pool import worker_listen
from authz.workers.stdout import PIPE_BUF, AtomicLines


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_and_histograms_add_up_gauges_are_the_supervisors() -> None:
    supervisor, one, two = Metrics(), Metrics(), Metrics()
    supervisor.policy_states(["ready", "ready"])
    one.policy_states(["ready", "ready"])  # workers compile the same policies: not summed
    two.policy_states(["ready", "ready"])
    one.check(0.001, allowed=True, policy="shop/orders", reason="allowed", dry_run=False)
    two.check(0.001, allowed=True, policy="shop/orders", reason="allowed", dry_run=False)
    two.check(0.2, allowed=False, policy="shop/orders", reason="missing_token", dry_run=False)
    two.ratelimit_backend_mode("fallback")
    merged = _samples(render([m.render()[0].decode() for m in (supervisor, one, two)]))
    allowed = (
        ("decision", "allow"),
        ("dry_run", "false"),
        ("policy", "shop/orders"),
        ("reason", "allowed"),
    )
    assert merged[("authz_decisions_total", allowed)] == 2
    assert merged[("authz_check_duration_seconds_count", (("decision", "allow"),))] == 2
    assert merged[("authz_check_duration_seconds_count", (("decision", "deny"),))] == 1
    assert merged[("authz_policies", (("state", "ready"),))] == 2
    assert merged[("authz_ratelimit_backend_mode", (("mode", "fallback"),))] == 1
    assert merged[("authz_ratelimit_backend_mode", (("mode", "redis"),))] == 0


def test_each_worker_gets_a_socket_beside_the_configured_one() -> None:
    assert worker_listen("unix:/run/authz/authz.sock", 0) == "unix:/run/authz/authz-0.sock"
    assert worker_listen("unix:/run/authz/authz.sock", 11) == "unix:/run/authz/authz-11.sock"
    assert worker_listen("unix:/tmp/authz", 1) == "unix:/tmp/authz-1"


def test_lines_leave_in_writes_of_whole_lines_within_pipe_buf() -> None:
    read, write = os.pipe()
    writes: list[int] = []

    def recording(fd: int, chunk: bytes) -> int:
        writes.append(len(chunk))
        assert chunk.endswith(b"\n")  # never a partial line
        return os.write(fd, chunk)

    try:
        stream = AtomicLines(write, write=recording)
        lines = [f'{{"n":{i},"pad":"{"x" * (i % 300)}"}}\n'.encode() for i in range(200)]
        huge = b"y" * (PIPE_BUF * 2) + b"\n"
        data = b"".join(lines[:100]) + huge + b"".join(lines[100:])
        assert stream.write(data) == len(data)
        assert len(writes) > 2
        assert all(size <= PIPE_BUF for size in writes if size != len(huge))
        os.close(write)
        received = b""
        while chunk := os.read(read, 65_536):
            received += chunk
        assert received == data
    finally:
        os.close(read)
