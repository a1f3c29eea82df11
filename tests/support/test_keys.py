"""The RSA key pool of tests/support/keys.py: reused keys, never one key twice in a process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import keys


def _numbers(key: object) -> int:
    return key.private_numbers().p  # type: ignore[attr-defined, no-any-return]


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh pool file and this process's pool state as at its start."""
    path = tmp_path / "pool.pem"
    monkeypatch.setattr(keys, "_POOL", path)
    monkeypatch.setattr(keys, "_pooled", [])
    monkeypatch.setattr(keys, "_taken", 0)
    return path


def _restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new pytest process sees: the file, but nothing taken from it yet."""
    monkeypatch.setattr(keys, "_pooled", [])
    monkeypatch.setattr(keys, "_taken", 0)


def test_a_later_process_reuses_the_keys_in_order_then_makes_new_ones(
    pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [_numbers(keys._rsa_private()) for _ in range(3)]
    assert pool.read_bytes().count(b"BEGIN PRIVATE KEY") == 3
    _restart(monkeypatch)
    second = [_numbers(keys._rsa_private()) for _ in range(4)]
    assert second[:3] == first
    assert len(set(second)) == 4
    assert pool.read_bytes().count(b"BEGIN PRIVATE KEY") == 4


def test_a_key_cut_short_is_replaced_and_nothing_repeats(
    pool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [_numbers(keys._rsa_private()) for _ in range(2)]
    text = pool.read_bytes()
    pool.write_bytes(text[: len(text) * 3 // 4] + keys._END)  # the second key, cut short
    _restart(monkeypatch)
    again = [_numbers(keys._rsa_private()) for _ in range(3)]
    assert again[0] == made[0]
    assert len(set(again)) == 3


def test_a_full_pool_grows_no_more(pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_POOL_SIZE", 2)
    for _ in range(4):
        keys._rsa_private()
    assert pool.read_bytes().count(b"BEGIN PRIVATE KEY") == 2


def test_only_the_owner_can_read_the_pool(pool: Path) -> None:
    keys._rsa_private()
    assert pool.stat().st_mode & 0o777 == 0o600
