"""How a setting is declared: once, as a field of its section.

    grpc_listen: ListenAddress = option(
        ListenAddress("127.0.0.1", 9191), Listen(), flag="--grpc-listen",
        help="ext_authz and gRPC health: `HOST:PORT` or `unix:/path/to.sock`",
    )

The field's default is the setting's default; the Option in its metadata carries the flag, the
environment variable (AUTHZ_<FLAG> unless named), the kind (type, range, and the metavar unless
named) and the help. The command line (authz.settings.flags), the README's flag table and each
section's validation are derived from these declarations (envoyproxy/ratelimit keeps field, env name, default and
description together the same way). Help and `shown` may hold markdown code spans: the README
keeps them, --help drops the backticks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from authz.settings.kinds import Kind

T = TypeVar("T")

ENV_PREFIX = "AUTHZ_"
_METADATA_KEY = "authz.option"


@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    kind: Kind[T]
    help: str
    #: The command-line flag; None for a setting read from the environment only.
    flag: str | None = None
    #: The environment variable, when it is not AUTHZ_<FLAG>.
    env: str | None = None
    metavar: str | None = None
    #: The default as a reader should see it, when the value alone says little (markdown).
    shown: str | None = None
    #: More for the README only (markdown: links to its sections).
    doc: str = ""

    @property
    def env_name(self) -> str:
        if self.env is not None:
            return self.env
        assert self.flag is not None, "a setting needs a flag or an environment variable"
        return ENV_PREFIX + self.flag.lstrip("-").upper().replace("-", "_")

    @property
    def name(self) -> str:
        """How messages name the setting: its flag, else its environment variable."""
        return self.flag or self.env_name


def option(
    default: T,
    kind: Kind[T],
    *,
    help: str,
    flag: str | None = None,
    env: str | None = None,
    metavar: str | None = None,
    shown: str | None = None,
    doc: str = "",
) -> T:
    """A section field declaring a setting (see the module docstring)."""
    declared = Option(kind, help, flag, env, metavar or kind.metavar, shown, doc)
    field: T = dataclasses.field(default=default, metadata={_METADATA_KEY: declared})
    return field


def options(section: type[Any]) -> Iterator[tuple[str, Option[Any]]]:
    """(field name, Option) of every declared setting of a section class, in order."""
    for field in dataclasses.fields(section):
        declared = field.metadata.get(_METADATA_KEY)
        if declared is not None:
            yield field.name, declared


def flag_of(section: type[Any], name: str) -> str:
    """The name messages use for a section's field."""
    return dict(options(section))[name].name


class Section:
    """Base of the settings sections: one validates itself when constructed, as httpx's
    Timeout does. Declared kinds check their values (choices); `validate` checks the fields
    together. Messages name settings by their flags (the CLI renames the ones that came from
    the environment)."""

    __slots__ = ()

    def __post_init__(self) -> None:
        for name, declared in options(type(self)):
            declared.kind.check(getattr(self, name), name=declared.name)
        self.validate()

    def validate(self) -> None:
        """Checks across fields; raise ConfigError."""
