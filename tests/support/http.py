"""A raw HTTP/1.1 client for tests: sends the path byte for byte (no normalization, no quoting)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    host: str | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Response:
    netloc = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(netloc, timeout=timeout)
    all_headers = dict(headers or {})
    if host is not None:
        all_headers["Host"] = host
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        for name, value in all_headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return Response(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()
