"""Running the command line in-process: main([...]) with its exit code and output, and
`authz serve`'s settings for a command line and an environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from authz.cli import build_parser, main, serve_settings
from authz.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
GOOD = FIXTURES / "good" / "orders.yaml"
DEMO_KEY = ROOT / "examples" / "keys" / "demo-private.pem"
DEMO_JWKS = ROOT / "examples" / "keys" / "demo-jwks.json"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def serve(*argv: str, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of `authz serve ARGV` in `environ` (ConfigError when refused)."""
    settings, _ = serve_settings(build_parser().parse_args(["serve", *argv]), environ or {})
    return settings
