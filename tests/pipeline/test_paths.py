"""normalize_path: one safe normal form, or a refusal when the upstream's reading is a guess."""

from __future__ import annotations

import pytest

from authz.errors import PathError
from authz.pipeline.steps.path import normalize_path

NORMALIZED = [
    ("/", "/"),
    ("/orders", "/orders"),
    ("/orders/", "/orders/"),
    ("/orders?id=1&x=/../admin", "/orders"),
    ("/orders#/../admin", "/orders"),
    ("/orders#frag?x", "/orders"),
    ("/a//b", "/a/b"),
    ("//a///b//", "/a/b/"),
    ("//", "/"),
    ("/a/./b", "/a/b"),
    ("/./a", "/a"),
    ("/a/.", "/a/"),
    ("/./", "/"),
    ("/a/b/../c", "/a/c"),
    ("/a/b/..", "/a/"),
    ("/a/..", "/"),
    ("/a/b/../../c/", "/c/"),
    ("/a/..b/.c/b..", "/a/..b/.c/b.."),
    ("/.well-known/jwks", "/.well-known/jwks"),
    # Unreserved characters are decoded, whatever the case of the hex digits.
    ("/%61%62%63", "/abc"),
    ("/%7Euser/%2d%2E%5f", "/~user/-._"),
    # Encoded dots become dot segments and are resolved like literal ones.
    ("/public/%2e%2e/admin", "/admin"),
    ("/public/%2E/x", "/public/x"),
    ("/a/.%2e/b", "/b"),
    # Other escapes stay escaped, with upper-case hex; nothing is decoded twice.
    ("/a%20b", "/a%20b"),
    ("/a%3ab", "/a%3Ab"),
    ("/%e2%82%ac", "/%E2%82%AC"),
    ("/%25", "/%25"),
    ("/100%25", "/100%25"),
    ("/%25zz", "/%25zz"),
    ("/%25/x", "/%25/x"),
    ("/%6d%6D", "/mm"),
    ("/%c3%a9", "/%C3%A9"),
    ("/%f0%9f%98%80", "/%F0%9F%98%80"),
    ("/caf\u00e9", "/caf\u00e9"),
]


@pytest.mark.parametrize(("raw", "normal"), NORMALIZED)
def test_normalization(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize(("raw", "normal"), NORMALIZED)
def test_normal_forms_are_fixed_points(raw: str, normal: str) -> None:
    assert normalize_path(normal) == normal


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "the path must start with /"),
        ("orders", "the path must start with /"),
        ("*", "the path must start with /"),
        ("?x=1", "the path must start with /"),
        ("http://evil.test/admin", "the path must start with /"),
        ("/a%2fb", "the path contains an encoded slash, backslash or NUL"),
        ("/a%2Fb", "the path contains an encoded slash, backslash or NUL"),
        ("/a%5cb", "the path contains an encoded slash, backslash or NUL"),
        ("/a%00", "the path contains an encoded slash, backslash or NUL"),
        ("/a\\b", "the path contains a backslash or control characters"),
        ("/a\x00b", "the path contains a backslash or control characters"),
        ("/a\tb", "the path contains a backslash or control characters"),
        ("/a\r\nb", "the path contains a backslash or control characters"),
        ("/a\x7fb", "the path contains a backslash or control characters"),
        ("/a%", "the path contains a broken percent-escape"),
        ("/a%4", "the path contains a broken percent-escape"),
        ("/a%zz", "the path contains a broken percent-escape"),
        ("/a%%41", "the path contains a broken percent-escape"),
        ("/..", "the path climbs above the root"),
        ("/../admin", "the path climbs above the root"),
        ("/a/../..", "the path climbs above the root"),
        ("/%2e%2e/admin", "the path climbs above the root"),
        # An upstream that decodes twice, cuts at ";" or decodes leniently would see /admin.
        ("/public/%252e%252e/admin", "the path is percent-encoded twice"),
        ("/public/%252f..%252fadmin", "the path is percent-encoded twice"),
        ("/public/%2525252e", "the path is percent-encoded twice"),
        ("/public/%25%32%65%25%32%65/admin", "the path is percent-encoded twice"),
        ("/public/%25%32e", "the path is percent-encoded twice"),
        ("/public/%252E", "the path is percent-encoded twice"),
        ("/public/%25aF", "the path is percent-encoded twice"),
        ("/public/..%3b/admin", "the path contains an encoded semicolon"),
        ("/public/..%3B/admin", "the path contains an encoded semicolon"),
        ("/public/%3b", "the path contains an encoded semicolon"),
        ("/public/%c0%ae%c0%ae/admin", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%C0%AE", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%e0%80%ae", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%f0%80%80%ae", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%ed%a0%80", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%ff", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%80", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%c3", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%c3/%a9", "the path's percent-escapes are not valid UTF-8"),
        ("/public/%f4%90%80%80", "the path's percent-escapes are not valid UTF-8"),
        ("/public/\udcff%41", "the path's percent-escapes are not valid UTF-8"),
    ],
)
def test_refusals(raw: str, message: str) -> None:
    with pytest.raises(PathError) as caught:
        normalize_path(raw)
    assert str(caught.value) == message
    assert caught.value.code == "invalid_path"


def test_escapes_in_the_query_are_not_inspected() -> None:
    assert normalize_path("/search?q=%2F%00%zz\\") == "/search"


def test_a_raw_semicolon_is_an_ordinary_character() -> None:
    # Only the encoded form is ambiguous: a raw ";" reaches the upstream as the client wrote it.
    assert normalize_path("/a;b") == "/a;b"


def test_long_paths_of_escapes_are_refused_or_normalized_whole() -> None:
    assert normalize_path("/" + "%41" * 10_000) == "/" + "A" * 10_000
    with pytest.raises(PathError):
        normalize_path("/" + "%41" * 10_000 + "%c0%ae")
