"""The two tiers: `pytest --fast` deselects the integration tests, and refuses a real part that a
misclassified test starts anyway."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.provision import ROOT
from tests.support import tiers
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
    files = ["tests/e2e/test_engines.py", "tests/controller/test_watcher.py"]
    everything = collected(*files)
    fast = collected("--fast", *files)
    assert "tests/e2e/test_engines.py::" in everything
    assert "tests/e2e/test_engines.py::" not in fast  # by directory
    kube = "tests/controller/test_watcher.py::test_dropped_connection_resumes_from_the_last_version"
    assert kube in everything
    assert kube not in fast  # by fixture
    unit = "tests/controller/test_watcher.py::test_backoff_grows_with_jitter_and_is_capped"
    assert unit in fast
    assert "deselected" in fast.splitlines()[-1]


def test_a_real_part_started_in_the_fast_tier_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiers, "_fast", True)
    with pytest.raises(
        RuntimeError, match="starts redis-server, which `make test-fast` leaves out"
    ):
        RedisServer(tmp_path).start()
