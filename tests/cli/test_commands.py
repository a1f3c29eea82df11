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


def test_validate_with_allowed_hosts_reports_each_host_not_granted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # GOOD is namespace shop with hosts orders.example.com and *.orders.example.com.
    grants = tmp_path / "hosts.yaml"
    grants.write_text("shop: [orders.example.com, '*.example.com']\n")
    assert run(["validate", "-q", "--allowed-hosts", str(grants), str(GOOD)], capsys)[0] == 0
    grants.write_text("shop: [orders.example.com]\nteam: ['*']\n")
    code, out, err = run(["validate", "--allowed-hosts", str(grants), str(GOOD)], capsys)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{GOOD}:0: spec.hosts: host '*.orders.example.com' is not granted to namespace 'shop' "
        f"(see --allowed-hosts {grants})",
        "0 valid, 1 invalid AuthPolicy document(s) in 1 file(s)",
    ]


def test_validate_with_an_unusable_grants_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    grants = tmp_path / "hosts.yaml"
    grants.write_text("shop: ['*.*']\n")
    code, out, err = run(["validate", "--allowed-hosts", str(grants), str(GOOD)], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"authz: error: --allowed-hosts {grants}: shop[0]: '*.*' is not")
    assert err.count("\n") == 1
    code, _, err = run(["validate", "--allowed-hosts", str(tmp_path / "nope"), str(GOOD)], capsys)
    assert code == 2
    assert "cannot read the file" in err


def test_validate_names_an_empty_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, out, _ = run(["validate", str(GOOD), str(empty)], capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{empty}: the file is empty (no YAML document)",
        "1 valid, 0 invalid AuthPolicy document(s) in 2 file(s)",
    ]


def test_validate_says_did_you_mean(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(GOOD.read_text().replace("kind: AuthPolicy", "kind: Authpolicy"))
    code, out, _ = run(["validate", "-q", str(typo)], capsys)
    assert code == 1
    assert out == f"{typo}:0: kind: unknown kind 'Authpolicy'; did you mean 'AuthPolicy'?\n"


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
