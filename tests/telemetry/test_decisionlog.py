"""The decision log: the fields of the contract, sampling of allows only, redaction, a writer
that never blocks a check."""

from __future__ import annotations

import calendar
import io
import json
import logging
import os
import select
import threading
from typing import Any

import pytest

from authz.server.observe import CheckTelemetry
from authz.telemetry.decisionlog import FIELDS, DecisionLog, LineWriter
from authz.telemetry.redact import REDACTED, RedactingFilter, redact
from tests.support.grpcclient import check_request
from tests.support.keys import claims
from tests.support.wait import wait_for
from tests.telemetry.fixtures import DRY_HOST, HOST, KEY, servicer

NOW = calendar.timegm((2026, 3, 4, 5, 6, 7)) + 0.089


def record(log: DecisionLog, *, allowed: bool, **overrides: Any) -> bool:
    fields: dict[str, Any] = {
        "decision_id": "abc",
        "allowed": allowed,
        "reason": "allowed" if allowed else "missing_token",
        "status": 200 if allowed else 401,
        "policy": "t/p",
        "rule": "read",
        "sub": "alice",
        "client_ip": "10.0.0.1",
        "method": "GET",
        "host": HOST,
        "path": "/orders/1",
        "latency": 0.0004567,
        "dry_run": False,
        **overrides,
    }
    return log.record(**fields)


def test_a_line_has_exactly_the_contract_fields() -> None:
    lines: list[bytes] = []
    log = DecisionLog(lines.append, clock=lambda: NOW)
    assert record(log, allowed=True, path="/orders/1?token=SECRET#frag", request_id="r-1")
    (raw,) = lines
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    line = json.loads(raw)
    assert list(line) == list(FIELDS)
    assert line == {
        "time": "2026-03-04T05:06:07.089Z",
        "decision_id": "abc",
        "decision": "allow",
        "reason": "allowed",
        "status": 200,
        "detail": "",
        "policy": "t/p",
        "rule": "read",
        "condition": None,
        "sub": "alice",
        "client_ip": "10.0.0.1",
        "method": "GET",
        "host": HOST,
        "path": "/orders/1",
        "latency_ms": 0.457,
        "dry_run": False,
        "request_id": "r-1",
        "trace_id": None,
    }


def test_denials_are_always_logged_and_allows_sampled() -> None:
    lines: list[bytes] = []
    draws = iter([0.1, 0.9, 0.49, 0.5])
    log = DecisionLog(lines.append, allow_sample_rate=0.5, random=lambda: next(draws))
    assert [record(log, allowed=True) for _ in range(4)] == [True, False, True, False]
    assert all(record(log, allowed=False) for _ in range(5))  # no draw used for denials
    assert len(lines) == 7


def test_sample_rate_zero_logs_denials_only() -> None:
    lines: list[bytes] = []
    log = DecisionLog(lines.append, allow_sample_rate=0.0, random=lambda: pytest.fail("drawn"))
    assert not record(log, allowed=True)
    assert record(log, allowed=False)
    assert [json.loads(x)["decision"] for x in lines] == ["deny"]


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_sample_rate_outside_0_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        DecisionLog(lambda _line: None, allow_sample_rate=rate)


async def test_checks_log_subject_client_and_dry_run_but_no_credentials() -> None:
    lines: list[bytes] = []
    service = servicer(CheckTelemetry(log=DecisionLog(lines.append)))
    token = KEY.sign(claims(sub="alice", scope="orders:read"))
    headers = {"authorization": f"Bearer {token}", "cookie": "session=COOKIE-VALUE"}
    await service.check(
        check_request(host=HOST, path="/orders/1?key=QUERY-SECRET", headers=headers)
    )
    await service.check(check_request(host=DRY_HOST, path="/orders/2?x=1", source_ip="10.9.9.9"))
    weak = KEY.sign(claims(sub="bob", scope="other"))
    await service.check(
        check_request(host=HOST, path="/orders/3", headers={"authorization": f"Bearer {weak}"})
    )
    text = b"".join(lines).decode()
    for secret in (token, weak, "COOKIE-VALUE", "QUERY-SECRET", "Bearer"):
        assert secret not in text
    allowed, dry, denied = (json.loads(x) for x in lines)
    assert (denied["reason"], denied["sub"]) == ("insufficient_scope", "bob")
    assert (allowed["decision"], allowed["sub"], allowed["path"]) == ("allow", "alice", "/orders/1")
    assert allowed["dry_run"] is False
    assert (dry["decision"], dry["reason"], dry["dry_run"]) == ("deny", "missing_token", True)
    assert (dry["client_ip"], dry["policy"]) == ("10.9.9.9", "t/dry")


def test_the_writer_writes_every_line_in_order() -> None:
    stream = io.BytesIO()
    writer = LineWriter(stream)
    for i in range(1000):
        writer.submit(b"%d\n" % i)
    writer.close()
    assert stream.getvalue().split() == [b"%d" % i for i in range(1000)]


def test_a_stuck_stdout_drops_and_counts_lines_instead_of_blocking() -> None:
    read_end, write_end = os.pipe()
    dropped: list[int] = []
    with os.fdopen(write_end, "wb") as stream:
        writer = LineWriter(stream, capacity=10, on_drop=dropped.append)
        writer.submit(b"x" * (1 << 20) + b"\n")  # more than a pipe holds: the thread blocks
        wait_for(lambda: select.select([read_end], [], [], 0)[0], what="the thread writing")
        for _ in range(100):  # returns at once although nothing can be written
            writer.submit(b"line\n")
        assert sum(dropped) >= 90
        drained = threading.Thread(target=lambda: _read_all(read_end), daemon=True)
        drained.start()
        writer.close()
    drained.join(10)


def _read_all(fd: int) -> None:
    while os.read(fd, 1 << 16):
        pass
    os.close(fd)


def test_redact_scrubs_tokens_and_cookies() -> None:
    token = KEY.sign(claims())
    assert token not in redact(f"got {token} from client")
    assert redact("Authorization: Bearer abcdefghijklmnop") == f"Authorization: {REDACTED}"
    assert "abcdefghijkl" not in redact("header bearer abcdefghijkl seen")
    assert "s3cr3t" not in redact("{'cookie': 'sid=s3cr3t; theme=dark'}")
    assert redact("nothing to see at /orders/1") == "nothing to see at /orders/1"


def test_the_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    token = KEY.sign(claims())
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("headers %s", {"authorization": f"Bearer {token}"})
        try:
            raise ValueError(f"cannot parse {token}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert token not in output
    assert token.split(".")[1] not in output
    assert REDACTED in output
    assert "ValueError" in output
