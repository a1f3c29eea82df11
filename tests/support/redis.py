"""Real Redis for tests: standalone servers (killable, restartable on the same port) and a
3-node Redis Cluster built with `redis-cli --cluster create`, each on free ports.

Nothing is installed here: redis-server and redis-cli come from the system (`make prereqs`).
A server that does not come up fails the test loudly with its log.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests.support import tiers
from tests.support.procs import Proc, free_port
from tests.support.wait import wait_for


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: `make prereqs` installs it or says how")
    return path


def ping(port: int, *, timeout: float = 0.5) -> bool:
    """One raw PING over RESP; True when the server answers PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def cli(port: int, *args: str, timeout: float = 10.0) -> str:
    done = subprocess.run(
        [binary("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


class RedisServer:
    """One redis-server process; `kill` and `start` again keep the same port."""

    def __init__(self, tmp: Path, *, name: str = "redis", port: int | None = None) -> None:
        self.tmp = tmp
        self.name = name
        self.port = port or free_port()
        self.proc: Proc | None = None
        self._starts = 0
        self.extra: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 10.0) -> RedisServer:
        self._starts += 1
        workdir = self.tmp / self.name
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            *self.extra,
        ]
        tiers.starting("redis-server")
        proc = self.proc = Proc(
            self.name, argv, log=self.tmp / f"{self.name}.{self._starts}.log", env=None
        )
        try:
            wait_for(lambda: ping(self.port), what="PONG", within=timeout, unless=proc.exited)
        except AssertionError as exc:
            proc.fail(str(exc))
        return self

    def kill(self) -> None:
        """SIGKILL: the way a crashed or partitioned Redis disappears."""
        if self.proc is not None and self.proc.alive():
            self.proc.popen.kill()
            self.proc.popen.wait()
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()

    def cli(self, *args: str) -> str:
        return cli(self.port, *args)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """Three masters, no replicas, all 16384 slots assigned; ready when cluster_state is ok."""

    def __init__(self, tmp: Path, *, nodes: int = 3) -> None:
        self.nodes = [
            RedisServer(tmp, name=f"redis-node-{i}", port=_cluster_port()) for i in range(nodes)
        ]
        for node in self.nodes:
            node.extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{node.port}.conf",
                "--cluster-node-timeout",
                "2000",
            ]

    @property
    def url(self) -> str:
        return "redis://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, *, timeout: float = 30.0) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli(
            self.nodes[0].port,
            "--cluster",
            "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            timeout=timeout,
        )
        wait_for(
            lambda: all("cluster_state:ok" in node.cli("cluster", "info") for node in self.nodes),
            what="the Redis Cluster reaching cluster_state:ok",
            within=timeout,
        )
        return self

    def node_for(self, key: str) -> RedisServer:
        """The master that owns the key's slot."""
        slot = int(self.nodes[0].cli("cluster", "keyslot", key).strip())
        for line in self.nodes[0].cli("cluster", "nodes").splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for ranges in parts[8:]:
                low, _, high = ranges.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node owns slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
