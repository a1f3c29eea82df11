"""Host patterns and path patterns, as compiled at policy load."""

from __future__ import annotations

import pytest

from authz.policy.matchers import PathMatcher, normalize_host_pattern, path_pattern_problem


@pytest.mark.parametrize(
    ("pattern", "normal"),
    [
        ("shop.example.com", "shop.example.com"),
        ("Shop.Example.COM", "shop.example.com"),
        ("shop.example.com.", "shop.example.com"),
        (" api.test ", "api.test"),
        ("*.example.com", "*.example.com"),
        ("*.Example.com", "*.example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("a-b.c-d.test", "a-b.c-d.test"),
    ],
)
def test_host_patterns_are_normalized(pattern: str, normal: str) -> None:
    assert normalize_host_pattern(pattern) == normal


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "*",
        "*.",
        "a.*.test",
        "**.test",
        "-shop.test",
        "shop-.test",
        "a..b",
        "shop test",
        "a_b.test",
    ],
)
def test_bad_host_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match=r"is not a host name or a \*\.domain wildcard"):
        normalize_host_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/", None),
        ("/orders", None),
        ("/orders/*", None),
        ("/orders/*/items", None),
        ("/docs/**", None),
        ("/**", None),
        ("/a.b/c-d_e~", None),
        ("orders", "must start with /"),
        ("", "must start with /"),
        ("/orders?x=1", "must not contain a query or fragment"),
        ("/orders#top", "must not contain a query or fragment"),
        ("/a//b", "must not contain empty segments (//)"),
        ("/a/./b", "must not contain . or .. segments"),
        ("/a/..", "must not contain . or .. segments"),
        ("/a/**/b", '"**" is allowed only as the last segment ("/prefix/**")'),
        ("/a/b*", '"*" must be a whole segment ("/a/*/b"), not part of one'),
        ("/a/*b/c", '"*" must be a whole segment ("/a/*/b"), not part of one'),
        ("/a/***", '"*" must be a whole segment ("/a/*/b"), not part of one'),
    ],
)
def test_path_pattern_problems(pattern: str, problem: str | None) -> None:
    assert path_pattern_problem(pattern) == problem


@pytest.mark.parametrize(
    ("patterns", "path", "matches"),
    [
        (["/orders"], "/orders", True),
        (["/orders"], "/orders/", False),
        (["/orders"], "/Orders", False),
        (["/orders/*"], "/orders/42", True),
        (["/orders/*"], "/orders", False),
        (["/orders/*"], "/orders/", False),
        (["/orders/*"], "/orders/42/items", False),
        (["/orders/*/items"], "/orders/42/items", True),
        (["/orders/*/items"], "/orders//items", False),
        (["/docs/**"], "/docs", True),
        (["/docs/**"], "/docs/", True),
        (["/docs/**"], "/docs/a/b/c", True),
        (["/docs/**"], "/docsx", False),
        (["/docs/**"], "/doc", False),
        (["/**"], "/", True),
        (["/**"], "/anything/at/all", True),
        (["/a.b"], "/a.b", True),
        (["/a.b"], "/aXb", False),  # literal, not a regex
        (["/a+"], "/aa", False),
        (["/x", "/y/*", "/z/**"], "/y/1", True),
        (["/x", "/y/*", "/z/**"], "/z/1/2", True),
        (["/x", "/y/*", "/z/**"], "/x", True),
        (["/x", "/y/*", "/z/**"], "/w", False),
        (["/*"], "/", False),
        (["/"], "/", True),
    ],
)
def test_path_matching(patterns: list[str], path: str, matches: bool) -> None:
    assert PathMatcher.compile(patterns).matches(path) is matches


def test_literal_patterns_need_no_regex() -> None:
    matcher = PathMatcher.compile(["/a", "/b"])
    assert matcher.regex is None
    assert matcher.exact == {"/a", "/b"}
