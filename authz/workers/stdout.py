"""Decision log lines from several processes into one stdout, never interleaved mid-line.

Every worker writes its own decision log to the pod's stdout, usually a pipe. POSIX makes a
write of at most PIPE_BUF (4 KiB on Linux) bytes to a pipe atomic; a longer one may be split
by another process's write when the pipe is full. So lines go out in writes of whole lines up
to PIPE_BUF each (a longer single line goes alone: it could only be split from itself).
"""

from __future__ import annotations

import io
import os
import select
from collections.abc import Callable

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


class AtomicLines(io.RawIOBase):
    """A write-only stream over a file descriptor, writing whole lines of at most PIPE_BUF."""

    def __init__(self, fd: int, *, write: Callable[[int, bytes], int] = os.write) -> None:
        super().__init__()
        self._fd = fd
        self._os_write = write

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = bytes(data)
        start = 0
        while start < len(view):
            end = start + PIPE_BUF
            if end < len(view):
                cut = view.rfind(b"\n", start, end)
                end = cut + 1 if cut >= start else view.find(b"\n", end) + 1 or len(view)
            else:
                end = len(view)
            self._write_all(view[start:end])
            start = end
        return len(view)

    def _write_all(self, chunk: bytes) -> None:
        while chunk:
            chunk = chunk[self._os_write(self._fd, chunk) :]
