"""`authz serve --tls-cert/--tls-key/--tls-client-ca`: what they set, and clear refusals (exit 2).

Missing partners and a Unix-socket listener are refused with the settings; files that exist but
cannot be used (not PEM, encrypted, unreadable, a key that does not match) are refused by a real
`authz serve` before it listens, naming the flag or the environment variable that set it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.settings import TlsSettings
from tests.cli.support import GOOD, serve
from tests.support.certs import Authority, write_pair
from tests.support.procs import PYTHON, ROOT

FREE = (
    "--grpc-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
)


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority.create("flags-ca")


@pytest.fixture
def files(tmp_path: Path, ca: Authority) -> dict[str, Path]:
    cert, key = write_pair(tmp_path, ca.issue("authz"), name="server")
    bundle = tmp_path / "ca.crt"
    bundle.write_bytes(ca.cert)
    return {"cert": cert, "key": key, "ca": bundle}


def test_tls_is_off_by_default() -> None:
    assert serve("--policies", str(GOOD)).tls == TlsSettings()
    assert not TlsSettings().enabled


def test_flags_and_environment_set_the_files(files: dict[str, Path]) -> None:
    by_flags = serve(
        "--policies",
        str(GOOD),
        "--tls-cert",
        str(files["cert"]),
        "--tls-key",
        str(files["key"]),
        "--tls-client-ca",
        str(files["ca"]),
    ).tls
    environ = {
        "AUTHZ_TLS_CERT": str(files["cert"]),
        "AUTHZ_TLS_KEY": str(files["key"]),
        "AUTHZ_TLS_CLIENT_CA": str(files["ca"]),
    }
    by_environment = serve("--policies", str(GOOD), environ=environ).tls
    expected = TlsSettings(cert=files["cert"], key=files["key"], client_ca=files["ca"])
    assert by_flags == by_environment == expected
    assert expected.enabled


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (("cert",), "--tls-cert needs --tls-key: the private key of the certificate"),
        (("key",), "--tls-key needs --tls-cert: the certificate of the key"),
        (("ca",), "--tls-client-ca needs --tls-cert and --tls-key"),
        (("key", "ca"), "--tls-key needs --tls-cert"),
    ],
)
def test_missing_partners_are_refused(
    files: dict[str, Path], given: tuple[str, ...], message: str
) -> None:
    flags = {"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-client-ca"}
    argv = [a for name in given for a in (flags[name], str(files[name]))]
    with pytest.raises(ConfigError) as refused:
        serve("--policies", str(GOOD), *argv)
    assert str(refused.value).startswith(message)


def test_a_missing_file_is_named_by_its_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        serve("--policies", str(GOOD), environ={"AUTHZ_TLS_CLIENT_CA": str(tmp_path / "nope")})
    assert str(refused.value) == f"AUTHZ_TLS_CLIENT_CA: {tmp_path / 'nope'} does not exist"


def test_tls_on_a_unix_socket_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        serve(
            "--policies",
            str(GOOD),
            "--grpc-listen",
            f"unix:{tmp_path}/authz.sock",
            "--tls-cert",
            str(files["cert"]),
            "--tls-key",
            str(files["key"]),
        )
    assert str(refused.value).startswith(
        f"--tls-cert needs a HOST:PORT --grpc-listen, not unix:{tmp_path}/authz.sock"
    )


def _serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "authz", "serve", "--policies", str(GOOD), *FREE, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unusable_files_exit_2_naming_the_flag(
    files: dict[str, Path], tmp_path: Path, ca: Authority
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    other_key = write_pair(tmp_path, ca.issue("other"), name="other")[1]
    cases = [
        (garbage, files["key"], None, f"--tls-cert: {garbage} holds no PEM certificate"),
        (files["cert"], garbage, None, f"--tls-key: {garbage} holds no unencrypted PEM private"),
        (files["cert"], files["cert"], None, "--tls-key: "),
        (files["cert"], files["key"], garbage, f"--tls-client-ca: {garbage} holds no PEM"),
        (files["cert"], other_key, None, f"--tls-key: {other_key} is not the private key of"),
    ]
    for cert, key, client_ca, message in cases:
        argv = ["--tls-cert", str(cert), "--tls-key", str(key)]
        if client_ca is not None:
            argv += ["--tls-client-ca", str(client_ca)]
        result = _serve(*argv)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"authz: error: {message}"), result.stderr
        assert "Traceback" not in result.stderr


def test_an_unreadable_key_exits_2_naming_the_variable(files: dict[str, Path]) -> None:
    # A file whose read fails for root too (the tests may run as root, who reads mode 000).
    unreadable = "/proc/self/mem"
    result = _serve("--tls-cert", str(files["cert"]), env={"AUTHZ_TLS_KEY": unreadable})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"authz: error: AUTHZ_TLS_KEY: cannot read {unreadable}: Input/output error\n"
    )
