"""A watch response, split into events: the stream half of kube.py, free of the kubernetes client.

The API server sends one JSON object per line over a chunked response that stays open. Reading it
ourselves (rather than through kubernetes.watch) gives the two things the watcher needs: a read
timeout that surfaces as WatchStalled (a half-open connection never errors on its own), and a
`close()` that another thread may call to end a blocked read at once (urllib3's `shutdown`).
An ERROR event (e.g. 410 Expired) is raised as KubeError with its status.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import urllib3

from authz.controller.api import WatchEvent
from authz.controller.errors import KubeError, KubeUnavailable, WatchStalled

log = logging.getLogger(__name__)


class WatchResponse:
    """A raw watch response, split into events; `close` aborts it from any thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = threading.Event()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            try:
                self._response.shutdown()  # unblocks a read in progress in the watch thread
            except Exception:  # already closed: nothing left to interrupt
                log.debug("watch shutdown", exc_info=True)
            # Close rather than release: a half-read stream must not go back into the pool.
            self._response.close()

    def __iter__(self) -> Iterator[WatchEvent]:
        buffer = b""
        try:
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield self._event(line)
        except urllib3.exceptions.ReadTimeoutError:
            if not self._closed.is_set():
                raise WatchStalled(f"{self._what}: no event or bookmark in time") from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not self._closed.is_set():
                raise KubeUnavailable(f"{self._what}: stream broke: {type(exc).__name__}") from None
        finally:
            self.close()

    def _event(self, line: bytes) -> WatchEvent:
        try:
            raw = json.loads(line)
            kind, obj = raw["type"], raw["object"]
        except (ValueError, KeyError, TypeError):
            raise KubeUnavailable(f"{self._what}: undecodable watch event") from None
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            reason = str(obj.get("reason", "")) if isinstance(obj, dict) else ""
            message = str(obj.get("message", "")) if isinstance(obj, dict) else ""
            status = code if isinstance(code, int) else None
            raise KubeError(f"{self._what}: {reason}: {message}", status=status, reason=reason)
        return WatchEvent(str(kind), obj if isinstance(obj, dict) else {})
