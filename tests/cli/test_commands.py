"""The command line through main([...]): validate, usage errors, --version."""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.cli import main
from tests.cli.support import FIXTURES, GOOD, run


def test_validate_valid_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", str(GOOD)], capsys) == (
        0,
        "1 valid, 0 invalid AuthPolicy document(s) in 1 file(s)\n",
        "",
    )
    assert run(["validate", "--quiet", str(FIXTURES / "good")], capsys) == (0, "", "")


def test_validate_invalid_files(capsys: pytest.CaptureFixture[str]) -> None:
    broken = FIXTURES / "broken" / "anonymous-scopes.yaml"
    code, out, _ = run(["validate", str(GOOD), str(broken)], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{broken}:0: spec.rules[0]: an anonymous rule cannot require scopes",
        "1 valid, 1 invalid AuthPolicy document(s) in 2 file(s)",
    ]
    code, out, _ = run(["validate", "-q", str(broken)], capsys)
    assert (code, out) == (
        1,
        f"{broken}:0: spec.rules[0]: an anonymous rule cannot require scopes\n",
    )


def test_validate_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(["validate", "-q", str(tmp_path / "nope")], capsys)
    assert code == 1
    assert out.splitlines()[0] == f"{tmp_path / 'nope'}: no such file or directory"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["validate"], [], ["frobnicate"], ["serve", "--log-level", "verbose"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2, argv
    assert "usage: authz" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("authz ")
