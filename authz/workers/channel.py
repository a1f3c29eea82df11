"""The supervisor <-> worker channel: pickled messages, length-prefixed, over a socketpair.

Pickle is safe here because both ends are our own processes and the socket has no name:
nothing else can write to it. It carries policy documents as the sources parsed them (YAML
may hold dates and other values JSON would refuse) and Settings dataclasses unchanged.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

_LENGTH = struct.Struct(">I")


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**26)
        return cls(reader, writer)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue one message (never blocks; the transport buffers)."""
        if self._writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> tuple[Any, ...] | None:
        """The next message; None once the other end is gone."""
        try:
            size = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))[0]
            data = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        message: tuple[Any, ...] = pickle.loads(data)  # noqa: S301 - our own process, see above
        return message

    def close(self) -> None:
        self._writer.close()
