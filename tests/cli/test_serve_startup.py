"""`authz serve` refused at startup, as a real process: exit 2 and one line on stderr.

A listen address already in use is a configuration error like a malformed one: the message
names the flag (or the environment variable that set it), with no traceback and no log line
from a server library before it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import GOOD
from tests.support.procs import PYTHON, ROOT

FREE = (
    "--grpc-listen",
    "127.0.0.1:0",
    "--http-listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
)


@pytest.fixture
def taken() -> Iterator[int]:
    """A port another process listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield int(holder.getsockname()[1])


def serve(
    *argv: str, env: dict[str, str] | None = None, without: str = ""
) -> subprocess.CompletedProcess[str]:
    """`authz serve` on free ports (but the flag `without`), with ARGV and ENV added."""
    free = [
        a
        for flag, v in zip(FREE[::2], FREE[1::2], strict=True)
        if flag != without
        for a in (flag, v)
    ]
    return subprocess.run(
        [PYTHON, "-m", "authz", "serve", "--policies", str(GOOD), *free, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flag", "engine"),
    [
        ("--http-listen", "h2"),
        ("--grpc-listen", "h2"),
        ("--grpc-listen", "grpcio"),
        ("--admin-listen", "h2"),
        ("--ext-proc-listen", "h2"),
    ],
)
def test_a_taken_port_exits_2_naming_the_flag(flag: str, engine: str, taken: int) -> None:
    result = serve("--grpc-server", engine, flag, f"127.0.0.1:{taken}")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"authz: error: {flag}: cannot listen on 127.0.0.1:{taken}: Address already in use\n"
    )


def test_a_taken_port_set_in_the_environment_names_the_variable(taken: int) -> None:
    result = serve(env={"AUTHZ_HTTP_LISTEN": f"127.0.0.1:{taken}"}, without="--http-listen")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"authz: error: AUTHZ_HTTP_LISTEN: cannot listen on 127.0.0.1:{taken}: "
        "Address already in use\n"
    )


def test_a_socket_path_that_cannot_be_created_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "authz.sock"
    result = serve("--grpc-listen", f"unix:{missing}")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"authz: error: --grpc-listen: cannot listen on unix:{missing}: No such file or directory\n"
    )


def test_worker_sockets_that_cannot_be_created_exit_2_before_any_worker_starts(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-dir" / "authz.sock"
    result = serve("--workers", "2", "--grpc-listen", f"unix:{missing}")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"authz: error: --grpc-listen: cannot listen on unix:{missing.parent}/authz-0.sock: "
        "No such file or directory\n"
    )


def test_no_cluster_configuration_is_exit_2_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHZ_", "KUBERNETES_"))}
    env["KUBECONFIG"] = str(tmp_path / "missing-kubeconfig")
    result = subprocess.run(
        [PYTHON, "-m", "authz", "serve", "--kubernetes", *FREE],  # no --policies
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        "authz: error: --kubernetes: cannot load in-cluster config or KUBECONFIG" in result.stderr
    )


@pytest.mark.parametrize("via_env", [False, True], ids=["flag", "env"])
def test_an_unusable_allowed_hosts_file_exits_2_naming_it(tmp_path: Path, via_env: bool) -> None:
    grants = tmp_path / "hosts.yaml"
    grants.write_text("shop: orders.example.com\n")
    if via_env:
        result = serve(env={"AUTHZ_ALLOWED_HOSTS": str(grants)})
        named = "AUTHZ_ALLOWED_HOSTS"
    else:
        result = serve("--allowed-hosts", str(grants))
        named = "--allowed-hosts"
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"authz: error: {named} {grants}: shop: expected a list of host patterns"
    )
    assert result.stderr.count("\n") == 1, result.stderr
