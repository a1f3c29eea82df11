"""Kinds of setting: text to value, with refusals that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.settings.kinds import Amount, Count, ExistingFile, Names, OptionalText, Paths, Switch


@pytest.mark.parametrize("text", ["", "x", "1.5", "65", "-1", "nan", "inf", "1e1", "٣", "1_0"])
def test_counts_are_whole_numbers_in_range(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Count(1, 64).parse(text, name="--workers")
    assert str(raised.value) == f"--workers: expected a whole number from 1 to 64, got {text!r}"


def test_counts() -> None:
    assert [Count(0, 64).parse(t, name="n") for t in ("0", " 7 ", "64")] == [0, 7, 64]
    assert Count(1, 64).describe() == "1 to 64"


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1.01", "-0.1", "half"])
def test_amounts_are_numbers_in_range(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^rate: expected a number from 0 to 1, got "):
        Amount(0, 1).parse(text, name="rate")


def test_amounts_in_another_unit_are_held_scaled_and_shown_as_typed() -> None:
    millis = Amount(1, 10_000, whole=True, scale=0.001)
    assert millis.parse("25", name="--redis-timeout-ms") == 0.025
    assert millis.show(0.05) == "50"
    with pytest.raises(ConfigError, match=r"expected a whole number from 1 to 10000, got '2\.5'"):
        millis.parse("2.5", name="--redis-timeout-ms")
    seconds = Amount(1, 3600, noun="seconds")
    assert seconds.parse("2.5", name="--lease-duration") == 2.5
    assert seconds.show(15.0) == "15"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("", False),
        ("Off", False),
    ],
)
def test_switches(text: str, value: bool) -> None:
    assert Switch().parse(text, name="--kubernetes") is value


def test_lists_and_text() -> None:
    assert Names().parse_many([" a", "b", "", "a "], name="--namespace") == ("a", "b")
    assert OptionalText().parse("  ", name="--selector") is None
    assert OptionalText().parse(" shard=eu ", name="--selector") == "shard=eu"


def test_paths_must_exist(tmp_path: Path) -> None:
    assert Paths().parse_many([str(tmp_path)], name="--policies") == (tmp_path,)
    with pytest.raises(ConfigError, match=r"^--policies: .*/a, .*/b does not exist$"):
        Paths().parse_many(
            [str(tmp_path / "a"), str(tmp_path), str(tmp_path / "b")], name="--policies"
        )
    with pytest.raises(ConfigError, match="does not exist"):
        ExistingFile().parse(str(tmp_path), name="--kubeconfig")  # a directory is no kubeconfig
    assert ExistingFile().parse("", name="--kubeconfig") is None
