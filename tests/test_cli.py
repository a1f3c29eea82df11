"""The command line through main([...]): exit codes, output, and AUTHZ_* environment defaults.

`serve` is only driven as far as its configuration goes: every case here ends with exit 2
before anything listens (a listen address is the first thing the service parses).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from authz.cli import main
from authz.devtools.token import DEMO_AUDIENCE, DEMO_ISSUER
from authz.errors import TokenError
from authz.jwt.keys import SUPPORTED_ALGORITHMS
from authz.jwt.providers import StaticKeys
from authz.jwt.sources import KeySource
from authz.jwt.verify import IssuerSpec, VerifiedToken, Verifier

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "policies"
GOOD = FIXTURES / "good" / "orders.yaml"
DEMO_KEY = ROOT / "examples" / "keys" / "demo-private.pem"
DEMO_JWKS = ROOT / "examples" / "keys" / "demo-jwks.json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the AUTHZ_* variables it sets."""
    for name in list(os.environ):
        if name.startswith(("AUTHZ_", "POD_")) or name == "KUBECONFIG":
            monkeypatch.delenv(name)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- validate -----------------------------------------------------------------------------------


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


# --- serve: flags and environment --------------------------------------------------------------


def test_serve_without_policies_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["serve"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(
        "authz: error: nothing to serve: pass --policies PATH (or set AUTHZ_POLICIES)"
    )


def test_missing_policy_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        ["serve", "--policies", str(tmp_path / "a"), "--policies", str(GOOD)], capsys
    )
    assert code == 2
    assert err == f"authz: error: --policies: {tmp_path / 'a'} does not exist\n"


def test_policies_from_the_environment_are_comma_separated(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", f" {tmp_path / 'a'} ,{GOOD},, {tmp_path / 'b'}")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: --policies: {tmp_path / 'a'}, {tmp_path / 'b'} does not exist\n"


def test_policies_flags_replace_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(tmp_path / "from-env"))
    code, _, err = run(
        ["serve", "--policies", str(tmp_path / "flag-1"), "--policies", str(tmp_path / "flag-2")],
        capsys,
    )
    assert code == 2
    assert err == (
        f"authz: error: --policies: {tmp_path / 'flag-1'}, {tmp_path / 'flag-2'} does not exist\n"
    )


@pytest.mark.parametrize("flag", ["grpc-listen", "http-listen", "admin-listen"])
def test_listen_addresses_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_" + flag.upper().replace("-", "_"), "from-env")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == (f"authz: error: --{flag}: expected HOST:PORT or unix:/path, got 'from-env'\n")


def test_flags_beat_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_GRPC_LISTEN", "from-env")
    code, _, err = run(["serve", "--grpc-listen", "from-flag"], capsys)
    assert code == 2
    assert err == "authz: error: --grpc-listen: expected HOST:PORT or unix:/path, got 'from-flag'\n"


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_a_bad_boolean_in_the_environment_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_KUBERNETES", value)
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: AUTHZ_KUBERNETES: expected true or false, got {value!r}\n"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("off", "--kubeconfig needs --kubernetes"),
        ("", "--kubeconfig needs --kubernetes"),
        ("TRUE", "--kubeconfig: /nonexistent/kubeconfig does not exist"),
        ("1", "--kubeconfig: /nonexistent/kubeconfig does not exist"),
    ],
)
def test_booleans_in_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str, error: str
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_KUBERNETES", value)
    monkeypatch.setenv("AUTHZ_NAMESPACE", "shop")
    monkeypatch.setenv("AUTHZ_KUBECONFIG", "/nonexistent/kubeconfig")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == f"authz: error: {error}\n"


def test_a_choice_from_the_environment_is_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTHZ_POLICIES", str(GOOD))
    monkeypatch.setenv("AUTHZ_LOG_LEVEL", "verbose")
    code, _, err = run(["serve"], capsys)
    assert code == 2
    assert err == (
        "authz: error: AUTHZ_LOG_LEVEL: expected one of debug, info, warning, error, "
        "got 'verbose'\n"
    )


def test_help_names_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for env in ("AUTHZ_POLICIES", "AUTHZ_GRPC_LISTEN", "AUTHZ_HTTP_LISTEN", "AUTHZ_LOG_LEVEL"):
        assert f"[env {env}]" in out


# --- token --------------------------------------------------------------------------------------


async def verify_demo(token: str, *, now: float | None = None) -> VerifiedToken:
    provider = StaticKeys(KeySource.inline(json.loads(DEMO_JWKS.read_text())))
    issuers = {
        DEMO_ISSUER: IssuerSpec(
            issuer=DEMO_ISSUER,
            audiences=frozenset({DEMO_AUDIENCE}),
            algorithms=SUPPORTED_ALGORITHMS,
            leeway=0,
            provider=provider,
        )
    }
    return await Verifier().verify(token, issuers, now=time.time() if now is None else now)


async def test_token_verifies_with_the_demo_public_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        [
            "token",
            "--key",
            str(DEMO_KEY),
            "--sub",
            "bob",
            "--scope",
            "orders:read orders:write",
            "--claim",
            'org={"tenant": "t1"}',
            "--claim",
            "note=plain text",
            "--claim",
            "n=7",
        ],
        capsys,
    )
    assert code == 0
    verified = await verify_demo(out.strip())
    claims = verified.claims
    assert verified.alg == "RS256"
    assert (claims["sub"], claims["scope"], claims["aud"]) == (
        "bob",
        "orders:read orders:write",
        DEMO_AUDIENCE,
    )
    assert (claims["org"], claims["note"], claims["n"]) == ({"tenant": "t1"}, "plain text", 7)
    assert claims["exp"] - claims["iat"] == 3600


async def test_token_defaults_to_the_demo_key_from_the_repository_root(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run(["token"], capsys)
    assert code == 0
    verified = await verify_demo(out.strip())
    assert verified.claims["sub"] == "alice"
    assert "scope" not in verified.claims


async def test_an_expired_token(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["token", "--key", str(DEMO_KEY), "--ttl", "-60"], capsys)
    assert code == 0
    with pytest.raises(TokenError, match="expired"):
        await verify_demo(out.strip())


def test_token_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(["token", "--key", str(tmp_path / "none.pem")], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"authz: error: --key: cannot read {tmp_path / 'none.pem'}")
    code, _, err = run(["token", "--key", str(DEMO_KEY), "--claim", "novalue"], capsys)
    assert (code, err) == (2, "authz: error: --claim: expected NAME=VALUE, got 'novalue'\n")
