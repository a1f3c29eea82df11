"""Listen addresses as settings hold them: "HOST:PORT", "[IPv6]:PORT" or "unix:/path/to.sock".

Parsed when the settings are read, so a malformed address is a usage error before anything
starts; binding them is the server's business (authz.server.listen).
"""

from __future__ import annotations

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
