"""bearer_token: only `Authorization: Bearer`, telling "none" from "empty"."""

from __future__ import annotations

import pytest

from authz.jwt.extract import bearer_token


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"authorization": "Bearer abc.def.ghi"}, "abc.def.ghi"),
        ({"authorization": "bearer abc"}, "abc"),
        ({"authorization": "BEARER   abc  "}, "abc"),
        ({"authorization": "  Bearer abc"}, "abc"),
        ({"authorization": "Bearer"}, ""),
        ({"authorization": "Bearer   "}, ""),
        ({"authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"authorization": "Bearerabc"}, None),
        ({"authorization": ""}, None),
        ({}, None),
        ({"x-token": "Bearer abc"}, None),
        ({"cookie": "token=abc"}, None),
    ],
)
def test_bearer_token(headers: dict[str, str], token: str | None) -> None:
    assert bearer_token(headers) == token
