"""`authz serve` in-process: ready after the first load, a warning when that load served
nothing, and an orderly stop."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from authz.app import Service
from authz.settings import ListenAddress, PolicySettings, ServerSettings, Settings
from tests.support.wait import until

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "policies"
WITHIN = 30.0  # a deadline for startup, not a timing assertion
ANY_PORT = ListenAddress("127.0.0.1", 0)


def settings(policies: Path) -> Settings:
    return Settings(
        policies=PolicySettings(paths=(policies,)),
        server=ServerSettings(grpc_listen=ANY_PORT, http_listen=ANY_PORT, admin_listen=ANY_PORT),
    )


async def serve_then_stop(service: Service) -> None:
    """Run the service until it serves, then stop it."""
    running = asyncio.create_task(service.run())
    waiting = asyncio.create_task(service.serving.wait())
    await asyncio.wait({running, waiting}, timeout=WITHIN, return_when=asyncio.FIRST_COMPLETED)
    assert service.serving.is_set(), running.exception() if running.done() else "not serving"
    assert service.ready()
    service.request_stop()
    assert await asyncio.wait_for(running, WITHIN) == 0
    assert not service.ready()


async def test_ready_with_no_policy_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.yaml").write_text(
        (FIXTURES / "broken" / "anonymous-scopes.yaml").read_text()
    )
    caplog.set_level(logging.INFO)
    await serve_then_stop(Service(settings(tmp_path)))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("ready with no policy to serve: every check is denied") for m in warnings
    )
    assert "serving ext_authz on 127.0.0.1:" in caplog.text
    assert "with 0 policies" in caplog.text


async def test_ready_with_policies_says_nothing_of_the_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    await serve_then_stop(Service(settings(FIXTURES / "good" / "orders.yaml")))
    assert "with 1 policy" in caplog.text
    assert "ready with no policy" not in caplog.text
    assert caplog.records[-1].getMessage() == "stopped"


async def test_readiness_follows_the_first_load_and_drops_when_stopping(tmp_path: Path) -> None:
    service = Service(settings(FIXTURES / "good"))
    assert not service.ready()
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(service.serving.wait(), WITHIN)
    assert service.ready()
    service.request_stop()
    assert await asyncio.wait_for(running, WITHIN) == 0
    assert not service.ready()


async def test_metrics_count_the_policies_by_state(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "good.yaml").write_text((FIXTURES / "good" / "orders.yaml").read_text())
    (policies / "broken.yaml").write_text(
        (FIXTURES / "broken" / "anonymous-scopes.yaml").read_text()
    )
    service = Service(settings(policies))
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(service.serving.wait(), WITHIN)
    try:
        assert service.http_address is not None
        url = f"http://{service.http_address}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        assert 'authz_policies{state="ready"} 1.0' in text
        assert 'authz_policies{state="invalid"} 1.0' in text
    finally:
        service.request_stop()
        assert await asyncio.wait_for(running, WITHIN) == 0


async def test_allowed_hosts_in_file_mode_refuse_then_serve_after_the_grants_change(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    good = (FIXTURES / "good" / "orders.yaml").read_text()
    (policies / "orders.yaml").write_text(good)
    grants = tmp_path / "hosts.yaml"
    grants.write_text("shop: ['*.orders.example.com']\n")
    base = settings(policies)
    service = Service(
        replace(
            base,
            policies=PolicySettings(paths=(policies,), allowed_hosts=grants, poll_interval=0.02),
        )
    )
    running = asyncio.create_task(service.run())
    await asyncio.wait_for(service.serving.wait(), WITHIN)
    try:
        url = f"http://{service.http_address}/metrics"

        def metrics() -> str:
            with urllib.request.urlopen(url) as response:
                return str(response.read().decode())

        # The wildcard host is granted, the exact one is not: the policy is refused whole.
        assert 'authz_policies{state="host_not_allowed"} 1.0' in await asyncio.to_thread(metrics)
        grants.write_text("shop: [orders.example.com, '*.orders.example.com']\n")
        await until(lambda: 'authz_policies{state="ready"} 1.0' in metrics(), what="reload")
        assert 'authz_policies{state="host_not_allowed"} 0.0' in await asyncio.to_thread(metrics)
    finally:
        service.request_stop()
        assert await asyncio.wait_for(running, WITHIN) == 0
