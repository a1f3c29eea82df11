"""Fixtures of the controller tests: a fake API server (own process) and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.controller.harness import Cluster, cluster
from tests.support.fakekube import FakeKube


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[FakeKube]:
    with FakeKube.start(tmp_path / "kube", bookmark_interval=0.3) as server:
        yield server


@pytest.fixture
def k8s(kube: FakeKube) -> Iterator[Cluster]:
    with cluster(kube) as c:
        yield c
