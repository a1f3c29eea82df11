"""The CLI tests see only the AUTHZ_*, POD_* and KUBECONFIG variables they set."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AUTHZ_", "POD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)
