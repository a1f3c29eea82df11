"""Listening sockets: bind an address from the settings, or find out that it cannot be bound.

Every server binds (or probes) its address before anything starts serving, so a taken port or
an unusable socket path is a configuration error (exit 2) naming the flag, not a traceback
from deep inside a server's start. The address syntax belongs to the settings
(authz.settings.listen); it is re-exported here for the servers and tools that bind.
"""

from __future__ import annotations

import os
import socket
import stat

from authz.errors import ConfigError
from authz.settings.listen import ListenAddress, parse_listen

__all__ = [
    "ListenAddress",
    "bind",
    "bound",
    "check_free",
    "parse_listen",
    "remove_stale_socket",
]

_BACKLOG = 1024


def remove_stale_socket(address: ListenAddress) -> None:
    """A socket file left by a crashed process would make bind fail; remove it (only sockets)."""
    if address.path is None:
        return
    try:
        if stat.S_ISSOCK(os.lstat(address.path).st_mode):
            os.unlink(address.path)
    except FileNotFoundError:
        pass


def bind(address: ListenAddress, *, flag: str) -> socket.socket:
    """A listening socket for `address` (port 0 picks a free one); ConfigError naming `flag`."""
    try:
        if address.path is not None:
            remove_stale_socket(address)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address.path)
                sock.listen(_BACKLOG)
            except OSError:
                sock.close()
                raise
            return sock
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        return socket.create_server((address.host, address.port), family=family, backlog=_BACKLOG)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"{flag}: cannot listen on {address}: {reason}") from None


def bound(address: ListenAddress, sock: socket.socket) -> ListenAddress:
    """The address `sock` listens on: `address` with the port the system picked for port 0."""
    if address.path is not None:
        return address
    return ListenAddress(host=address.host, port=int(sock.getsockname()[1]))


def check_free(address: ListenAddress, *, flag: str) -> None:
    """Refuse an address a server that binds by itself (grpcio) could not bind.

    grpcio reports a taken port by logging from its C core to stderr before raising; trying the
    address first turns the common case into one clear line. (Another process may still take
    the port in between; grpcio's own error then says so.)
    """
    if address.path is None and address.port == 0:
        return
    bind(address, flag=flag).close()
    remove_stale_socket(address)
