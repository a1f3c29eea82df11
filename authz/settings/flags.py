"""`authz serve`'s flags and environment variables, derived from the settings' declarations.

Every declared setting with a flag becomes an argparse argument (grouped by section) and can
also come from its environment variable, AUTHZ_<FLAG>: a flag on the command line wins,
repeatable flags take a comma-separated list, switches take true/false. Values are parsed and
range-checked here, then each section is constructed and validates itself.

A message names a setting by its flag, except when the value came from the environment: then
it names the variable, wherever the message was raised (`Origins.rename`), so `AUTHZ_WORKERS=abc`
is reported as AUTHZ_WORKERS and a taken port set by AUTHZ_HTTP_LISTEN names that variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.errors import ConfigError
from authz.settings.declare import Option, options
from authz.settings.sections import Settings

_FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*(?![\w-])")
_FIELDS = {section.name: section for section in dataclasses.fields(Settings)}
#: The sections of Settings, by field name, in order.
SECTIONS = tuple(_FIELDS)
#: An environment variable that names no value (an empty list): as if it were not set.
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Declared:
    """One setting: which section of Settings holds it, the field, and its Option."""

    section: str
    field: str
    option: Option[Any]

    @property
    def dest(self) -> str:
        return f"{self.section}.{self.field}"


def declared() -> Iterator[Declared]:
    """Every declared setting of `authz serve`, in the order of --help and the README."""
    for section in SECTIONS:
        for name, declared_option in options(_section_type(section)):
            yield Declared(section, name, declared_option)


def _section_type(section: str) -> type[Any]:
    factory = _FIELDS[section].default_factory
    assert isinstance(factory, type)
    return factory


def section_defaults(section: str) -> Any:
    """A section of Settings (by field name) with every setting at its default."""
    return _section_type(section)()


def accepted(declared_option: Option[Any]) -> str | None:
    """The values a setting accepts, unless its help names each one already."""
    kind = declared_option.kind
    if kind.choices and all(f"`{choice}`" in declared_option.help for choice in kind.choices):
        return None
    return kind.describe()


def plain(text: str) -> str:
    """Markdown code spans as a terminal shows them: without the backticks."""
    return text.replace("`", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One argument per declared flag, grouped by section. Every default is None, so that
    `settings_from` can tell a flag that was given from one that was not."""
    flagged = [setting for setting in declared() if setting.option.flag is not None]
    for section, settings in itertools.groupby(flagged, key=lambda setting: setting.section):
        group = parser.add_argument_group(_title(section))
        defaults = section_defaults(section)
        for setting in settings:
            declared_option, kind = setting.option, setting.option.kind
            assert declared_option.flag is not None
            help_text = _help(declared_option, getattr(defaults, setting.field))
            arguments: dict[str, Any] = {"dest": setting.dest, "default": None}
            arguments["help"] = help_text.replace("%", "%%")
            if kind.switch:
                arguments["action"] = "store_true"
            else:
                arguments["action"] = "append" if kind.repeatable else "store"
                arguments["metavar"] = declared_option.metavar
                arguments["choices"] = kind.choices
            group.add_argument(declared_option.flag, **arguments)


def _title(section: str) -> str:
    """A section's group title in --help: the first line of its docstring."""
    return (_section_type(section).__doc__ or section).strip().splitlines()[0].rstrip(".")


def _help(declared_option: Option[Any], default: object) -> str:
    notes = [accepted(declared_option)]
    if declared_option.shown is not None:
        notes.append(f"default: {declared_option.shown}")
    elif not declared_option.kind.switch and default not in (None, ()):
        notes.append(f"default {declared_option.kind.show(default)}")
    details = "; ".join(note for note in notes if note)
    text = declared_option.help + (f" ({details})" if details else "")
    return plain(f"{text} [env {declared_option.env_name}]")


@dataclass
class Origins:
    """Which settings came from the environment, to name them as the user set them."""

    #: flag -> environment variable, for each flag whose value came from the environment.
    from_env: dict[str, str] = field(default_factory=dict)

    def rename(self, error: ConfigError) -> ConfigError:
        """`error` with each flag that was set through the environment named by its variable."""
        message = str(error)
        renamed = _FLAG.sub(lambda m: self.from_env.get(m.group(0), m.group(0)), message)
        return error if renamed == message else ConfigError(renamed)


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[Settings, Origins]:
    """The settings the flags in `args` and the environment ask for. Raises ConfigError naming
    the flag or variable that is wrong; the Origins rename errors raised later the same way."""
    origins = Origins()
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    try:
        for setting in declared():
            declared_option = setting.option
            given = getattr(args, setting.dest, None) if declared_option.flag else None
            if given is not None:
                value = _parse(declared_option, given)
            else:
                raw = environ.get(declared_option.env_name)
                if raw is None:
                    continue
                flag = declared_option.flag
                if flag is not None:  # before parsing: its error names the variable too
                    origins.from_env[flag] = declared_option.env_name
                value = _parse_env(declared_option, raw)
                if value is _UNSET:
                    origins.from_env.pop(flag or "", None)
                    continue
            values[setting.section][setting.field] = value
        settings = Settings(
            **{section: _section_type(section)(**values[section]) for section in SECTIONS}
        )
    except ConfigError as exc:
        raise origins.rename(exc) from None
    return settings, origins


def _parse(declared_option: Option[Any], given: object) -> object:
    kind, name = declared_option.kind, declared_option.name
    if kind.switch:
        return True
    if kind.repeatable:
        assert isinstance(given, list)
        return kind.parse_many(given, name=name)
    assert isinstance(given, str)
    return kind.parse(given, name=name)


def _parse_env(declared_option: Option[Any], raw: str) -> object:
    """The value of an environment variable; _UNSET for a list that names nothing."""
    kind, name = declared_option.kind, declared_option.name
    if kind.repeatable:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return kind.parse_many(items, name=name) if items else _UNSET
    return kind.parse(raw, name=name)
