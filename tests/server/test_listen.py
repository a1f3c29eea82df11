"""parse_listen: HOST:PORT, [IPv6]:PORT and unix:/path, with errors that name the flag."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from authz.errors import ConfigError
from authz.server.listen import ListenAddress, parse_listen, remove_stale_socket


@pytest.mark.parametrize(
    ("value", "address", "target"),
    [
        ("127.0.0.1:9191", ListenAddress(host="127.0.0.1", port=9191), "127.0.0.1:9191"),
        ("0.0.0.0:0", ListenAddress(host="0.0.0.0", port=0), "0.0.0.0:0"),
        ("localhost:65535", ListenAddress(host="localhost", port=65535), "localhost:65535"),
        ("[::1]:9191", ListenAddress(host="::1", port=9191), "[::1]:9191"),
        ("[::]:80", ListenAddress(host="::", port=80), "[::]:80"),
        ("unix:/run/authz.sock", ListenAddress(path="/run/authz.sock"), "unix:/run/authz.sock"),
        ("unix:///run/authz.sock", ListenAddress(path="/run/authz.sock"), "unix:/run/authz.sock"),
    ],
)
def test_parse_listen(value: str, address: ListenAddress, target: str) -> None:
    parsed = parse_listen(value, flag="--grpc-listen")
    assert parsed == address
    assert parsed.grpc_target == target
    assert str(parsed) == target


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9191", "--grpc-listen: expected HOST:PORT or unix:/path, got '9191'"),
        ("localhost", "--grpc-listen: expected HOST:PORT or unix:/path, got 'localhost'"),
        ("host:", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:'"),
        ("host:http", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:http'"),
        ("host:-1", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:-1'"),
        ("host:65536", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:65536'"),
        ("host:\u00b2", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:\u00b2'"),
        ("host:\u0661", "--grpc-listen: expected HOST:PORT or unix:/path, got 'host:\u0661'"),
        ("", "--grpc-listen: expected HOST:PORT or unix:/path, got ''"),
        (":9191", "--grpc-listen: missing host in ':9191' (use 0.0.0.0:9191 for every interface)"),
        (
            "[]:9191",
            "--grpc-listen: missing host in '[]:9191' (use 0.0.0.0:9191 for every interface)",
        ),
        (
            "unix:authz.sock",
            "--grpc-listen: a unix socket needs an absolute path, e.g. unix:/run/authz.sock",
        ),
        ("unix:", "--grpc-listen: a unix socket needs an absolute path, e.g. unix:/run/authz.sock"),
    ],
)
def test_parse_listen_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen(value, flag="--grpc-listen")
    assert str(caught.value) == message


def test_the_flag_name_is_in_the_error() -> None:
    with pytest.raises(ConfigError, match=r"^--http-listen: "):
        parse_listen("nope", flag="--http-listen")


def test_a_stale_socket_is_removed_but_nothing_else(tmp_path: Path) -> None:
    sock_path = tmp_path / "authz.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
    assert sock_path.exists()
    remove_stale_socket(ListenAddress(path=str(sock_path)))
    assert not sock_path.exists()
    remove_stale_socket(ListenAddress(path=str(sock_path)))  # already gone: fine
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    remove_stale_socket(ListenAddress(path=str(regular)))
    assert regular.read_text() == "keep me"
    remove_stale_socket(ListenAddress(host="127.0.0.1", port=1))  # TCP: nothing to do
