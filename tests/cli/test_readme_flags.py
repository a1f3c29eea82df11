"""The README's `authz serve` flag table is the one the settings' declarations generate."""

from __future__ import annotations

from authz.settings.flags import declared
from tests.cli import readme_flags


def test_readme_flag_table_is_generated_from_the_declarations() -> None:
    readme = readme_flags.README.read_text()
    assert readme_flags.documented_table(readme) == readme_flags.table(), (
        "README.md is stale: run `python -m tests.cli.readme_flags --write`"
    )


def test_every_flag_has_a_row() -> None:
    rows = readme_flags.table().splitlines()[2:]
    flags = [s.option.flag for s in declared() if s.option.flag is not None]
    assert len(rows) == len(flags)
    for row, flag in zip(rows, flags, strict=True):
        assert row.startswith(f"| `{flag}")
