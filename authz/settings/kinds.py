"""Kinds of setting: how a flag's argument or an environment variable's text becomes a value.

A kind is the type and range half of a setting's declaration. `parse` reads what a user typed
and refuses it with a message naming the setting; `check` holds a value built in code to the
kind's invariants (choices), which is what a section checks when it is constructed; `show` and
`describe` say the default and the accepted values in --help and the README.

Ranges bound what an operator may ask for, and are checked only on input: tests and tools
build sections with sub-second timings a user has no reason to want.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Generic, TypeVar

from authz.errors import ConfigError
from authz.settings.listen import ListenAddress, parse_listen

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class Kind(Generic[T]):
    """The base: a single value, given once (the last one wins)."""

    #: Given several times on the command line; comma-separated in the environment.
    repeatable = False
    #: A flag without an argument; true or false in the environment.
    switch = False
    #: The only values accepted, if the kind has a fixed set.
    choices: tuple[str, ...] | None = None
    #: What --help calls the value, unless the declaration names it.
    metavar: str | None = None

    def parse(self, text: str, *, name: str) -> T:
        raise NotImplementedError

    def parse_many(self, texts: Sequence[str], *, name: str) -> T:
        """Repeatable kinds: every value given, in order."""
        raise NotImplementedError

    def check(self, value: T, *, name: str) -> None:
        """Refuse a value built in code that no input could have produced."""

    def show(self, value: T) -> str:
        return str(value)

    def describe(self) -> str | None:
        """The accepted values, for --help and the README (markdown code spans)."""
        return None


class Text(Kind[str]):
    def __init__(self, *, choices: tuple[str, ...] | None = None) -> None:
        self.choices = choices

    def parse(self, text: str, *, name: str) -> str:
        self.check(text, name=name)
        return text

    def check(self, value: str, *, name: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{name}: expected one of {', '.join(self.choices)}, got {value!r}")

    def describe(self) -> str | None:
        if self.choices is None:
            return None
        return "one of " + ", ".join(f"`{choice}`" for choice in self.choices)


class OptionalText(Kind[str | None]):
    """Free text; empty (or only spaces) means not set."""

    def parse(self, text: str, *, name: str) -> str | None:
        return text.strip() or None

    def show(self, value: str | None) -> str:
        return value or ""


class Switch(Kind[bool]):
    switch = True

    def parse(self, text: str, *, name: str) -> bool:
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ConfigError(f"{name}: expected true or false, got {text!r}")
        return lowered in _TRUE

    def show(self, value: bool) -> str:
        return "on" if value else "off"


def _number(text: str, *, name: str, low: float, high: float, whole: bool, noun: str) -> float:
    value = float("nan")  # fails the range check below, as nan and inf do
    # int() and float() also read other scripts' digits and "1_000": not what anyone types here.
    if text.isascii() and "_" not in text:
        with contextlib.suppress(ValueError):
            value = float(int(text)) if whole else float(text)
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected {noun} from {low:g} to {high:g}, got {text!r}")
    return value


class Count(Kind[int]):
    """A whole number within [low, high]."""

    metavar = "N"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def parse(self, text: str, *, name: str) -> int:
        return int(
            _number(
                text, name=name, low=self.low, high=self.high, whole=True, noun="a whole number"
            )
        )

    def describe(self) -> str:
        return f"{self.low} to {self.high}"


class Amount(Kind[float]):
    """A number within [low, high] in the unit the user types, held times `scale`
    (milliseconds typed, seconds held: scale 0.001)."""

    def __init__(
        self,
        low: float,
        high: float,
        *,
        whole: bool = False,
        scale: float = 1.0,
        noun: str | None = None,
    ) -> None:
        self.low, self.high, self.whole, self.scale = low, high, whole, scale
        self.noun = noun or ("a whole number" if whole else "a number")

    def parse(self, text: str, *, name: str) -> float:
        typed = _number(
            text, name=name, low=self.low, high=self.high, whole=self.whole, noun=self.noun
        )
        return typed * self.scale

    def show(self, value: float) -> str:
        typed = value / self.scale
        return str(round(typed)) if self.whole else f"{typed:g}"

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g}"


class Listen(Kind[ListenAddress]):
    metavar = "ADDR"

    def parse(self, text: str, *, name: str) -> ListenAddress:
        return parse_listen(text, flag=name)


class OptionalListen(Kind[ListenAddress | None]):
    """A listen address; empty means the listener is off."""

    metavar = "ADDR"

    def parse(self, text: str, *, name: str) -> ListenAddress | None:
        return parse_listen(text, flag=name) if text.strip() else None

    def show(self, value: ListenAddress | None) -> str:
        return "" if value is None else str(value)


class Paths(Kind[tuple[Path, ...]]):
    """Files or directories that must exist when the setting is read."""

    metavar = "PATH"
    repeatable = True

    def parse_many(self, texts: Sequence[str], *, name: str) -> tuple[Path, ...]:
        paths = tuple(Path(text) for text in texts)
        missing = [str(path) for path in paths if not path.exists()]
        if missing:
            raise ConfigError(f"{name}: {', '.join(missing)} does not exist")
        return paths

    def show(self, value: tuple[Path, ...]) -> str:
        return ",".join(map(str, value))


class Names(Kind[tuple[str, ...]]):
    """Names given once or more; blanks and repeats are dropped, order is kept."""

    repeatable = True

    def parse_many(self, texts: Sequence[str], *, name: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(text.strip() for text in texts if text.strip()))

    def show(self, value: tuple[str, ...]) -> str:
        return ",".join(value)


class ExistingFile(Kind[Path | None]):
    """A file that must exist when the setting is read; empty means not set."""

    metavar = "FILE"

    def parse(self, text: str, *, name: str) -> Path | None:
        if not text:
            return None
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"{name}: {path} does not exist")
        return path

    def show(self, value: Path | None) -> str:
        return "" if value is None else str(value)


class Directory(Kind[Path]):
    """A directory that need not exist yet (it may be mounted, or used only by some policies)."""

    metavar = "DIR"

    def parse(self, text: str, *, name: str) -> Path:
        if not text.strip():
            raise ConfigError(f"{name}: needs a directory")
        return Path(text)
