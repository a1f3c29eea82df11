"""The two tiers: `pytest --fast` deselects the integration tests, and refuses a real part that a
misclassified test starts anyway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.provision import ROOT
from tests.support import schedule, tiers
from tests.support.redis import RedisServer


def collected(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_fast_deselects_by_directory_and_fixture_and_keeps_the_rest() -> None:
    from tests.controller import test_watcher
    from tests.e2e import test_engines

    engines = [name for name in vars(test_engines) if name.startswith("test_")]
    kube = "test_dropped_connection_resumes_from_the_last_version"
    unit = "test_backoff_grows_with_jitter_and_is_capped"
    assert engines
    assert hasattr(test_watcher, kube)
    assert hasattr(test_watcher, unit)
    fast = collected("--fast", "tests/e2e/test_engines.py", "tests/controller/test_watcher.py")
    assert "tests/e2e/test_engines.py::" not in fast  # by directory
    assert f"tests/controller/test_watcher.py::{kube}" not in fast  # by fixture
    assert f"tests/controller/test_watcher.py::{unit}" in fast
    assert "deselected" in fast.splitlines()[-1]  # deselected, not skipped


def test_a_real_part_started_in_the_fast_tier_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiers, "_fast", True)
    with pytest.raises(
        RuntimeError, match="starts redis-server, which `make test-fast` leaves out"
    ):
        RedisServer(tmp_path).start()


def test_property_tests_try_fewer_examples_in_the_fast_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tiers, "_fast", False)
    assert [tiers.examples(n) for n in (10, 60, 400)] == [10, 60, 400]
    monkeypatch.setattr(tiers, "_fast", True)
    # A quarter, but never fewer than the floor, and never more than asked for.
    assert [tiers.examples(n) for n in (10, 60, 400)] == [
        10,
        tiers.FAST_FLOOR,
        400 // tiers.FAST_SHARE,
    ]


def test_an_authorization_server_started_in_the_fast_tier_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.oidc import OidcProvider

    monkeypatch.setattr(tiers, "_fast", True)
    with pytest.raises(RuntimeError, match="starts oidc-provider, which `make test-fast`"):
        OidcProvider.start(tmp_path)


class _Item:
    def __init__(self, nodeid: str, *fixtures: str) -> None:
        self.nodeid, self.fixturenames = nodeid, list(fixtures)


def test_the_lane_takes_every_real_part_but_the_chart_and_the_authorization_server() -> None:
    parts, beside = {"kube": "", "start_oidc": "", "redis_server": ""}, frozenset({"start_oidc"})

    def lane(nodeid: str, *fixtures: str) -> bool:
        return schedule.in_lane(_Item(nodeid, *fixtures), parts, beside=beside)  # type: ignore[arg-type]

    assert lane("tests/e2e/test_gateway.py::test_x")
    assert lane("tests/controller/test_x.py::test_x", "kube")
    assert not lane("tests/deploy/test_chart_render.py::test_x")
    assert lane("tests/deploy/test_chart_render.py::test_x", "kube")
    assert not lane("tests/pipeline/test_sender.py::test_x", "start_oidc")
    # With another real part it waits for the lane like any other.
    assert lane("tests/pipeline/test_x.py::test_x", "start_oidc", "redis_server")
