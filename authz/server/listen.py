"""Listen addresses: "HOST:PORT", "[IPv6]:PORT" or "unix:/path/to.sock"."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from authz.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str = ""
    port: int = 0
    #: Set for a Unix domain socket.
    path: str | None = None

    @property
    def grpc_target(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.grpc_target


def parse_listen(value: str, *, flag: str) -> ListenAddress:
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path.startswith("/"):
            raise ConfigError(
                f"{flag}: a unix socket needs an absolute path, e.g. unix:/run/authz.sock"
            )
        return ListenAddress(path=path)
    host, sep, port = value.rpartition(":")
    # isdigit() alone accepts superscripts (int() then raises) and other scripts' digits.
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ConfigError(f"{flag}: expected HOST:PORT or unix:/path, got {value!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ConfigError(
            f"{flag}: missing host in {value!r} (use 0.0.0.0:{port} for every interface)"
        )
    return ListenAddress(host=host, port=int(port))


def remove_stale_socket(address: ListenAddress) -> None:
    """A socket file left by a crashed process would make bind fail; remove it (only sockets)."""
    if address.path is None:
        return
    try:
        if stat.S_ISSOCK(os.lstat(address.path).st_mode):
            os.unlink(address.path)
    except FileNotFoundError:
        pass
