"""`authz validate` through validate_paths: FILE:DOC_INDEX: field.path: message, exit 0 or 1.

Every file under tests/fixtures/policies/broken carries a "# BROKEN:" comment saying what is
wrong with it; EXPECTED below says exactly what validation must print for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from authz.sources.validate import validate_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"
BROKEN = FIXTURES / "broken"

#: Problem lines (after "FILE:") for each broken fixture.
EXPECTED: dict[str, list[str]] = {
    "alias-bomb.yaml": [
        "0: not valid YAML: aliases expand the document to more than 100000 values"
    ],
    "anonymous-scopes.yaml": ["0: spec.rules[0]: an anonymous rule cannot require scopes"],
    "bad-jsonpath.yaml": [
        "0: spec.rules[0].responseBody.redact[0].paths[0]: '$.cards[?(@.number)]': at offset 7: "
        "unsupported selector (use $, .name, ['name'], [n], [*], .* or ..name)",
        "0: spec.rules[0].responseBody.redact[0].paths[1]: '$.cards[0:2]': at offset 7: "
        "unsupported selector (use $, .name, ['name'], [n], [*], .* or ..name)",
    ],
    "bad-path-pattern.yaml": [
        '0: spec.rules[0].match.paths[0]: "**" is allowed only as the last segment ("/prefix/**")',
        "0: spec.rules[0].match.paths[1]: must not contain empty segments (//)",
    ],
    "duplicate-names.yaml": [
        f"1: metadata.name: a policy named shop/twin is already defined at "
        f"{BROKEN / 'duplicate-names.yaml'}:0"
    ],
    "forbidden-header.yaml": [
        "0: spec.response.setHeaders[0].name: 'host' cannot be set by a policy",
        "0: spec.response.setHeaders[1]: set exactly one of claim or value",
    ],
    "missing-issuers.yaml": [
        "0: spec.issuers: issuers must list at least one issuer when a rule requires a token"
    ],
    "plain-http-jwks.yaml": [
        "0: spec.issuers[0].jwksUri: must use https (plain http is allowed only for loopback hosts)"
    ],
    "recursive-alias.yaml": ["0: not valid YAML: an alias refers to an anchor that contains it"],
    "syntax-error.yaml": ["1: not valid YAML (line 15): expected ',' or ']', but got ':'"],
    "unknown-field.yaml": ["0: spec.rules[0].scope: unknown field (known fields: "],
    "wrong-version.yaml": [
        "0: apiVersion: 'authz.dev/v1beta9' is not supported; use 'authz.dev/v1alpha1'"
    ],
}


def run(*paths: Path, quiet: bool = False) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = validate_paths(list(paths), quiet=quiet, out=out)
    return code, out.getvalue().splitlines()


def test_every_broken_fixture_says_what_is_wrong() -> None:
    files = sorted(p.name for p in BROKEN.iterdir())
    assert files == sorted(EXPECTED)
    for name in files:
        assert "# BROKEN: " in (BROKEN / name).read_text(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_fixture(name: str) -> None:
    path = BROKEN / name
    code, lines = run(path, quiet=True)
    assert code == 1
    expected = [f"{path}:{line}" for line in EXPECTED[name]]
    assert len(lines) == len(expected), lines
    for line, prefix in zip(lines, expected, strict=True):
        assert line.startswith(prefix)
        if not prefix.endswith("known fields: "):
            assert line == prefix


def test_valid_files_exit_zero_with_a_summary() -> None:
    code, lines = run(FIXTURES / "good")
    assert code == 0
    assert lines == ["4 valid, 0 invalid AuthPolicy document(s) in 3 file(s)"]
    code, lines = run(FIXTURES / "good", quiet=True)
    assert (code, lines) == (0, [])


def test_a_broken_document_is_counted_beside_good_ones() -> None:
    path = BROKEN / "syntax-error.yaml"
    code, lines = run(path)
    assert code == 1
    assert lines[-1] == "2 valid, 1 invalid AuthPolicy document(s) in 1 file(s)"


def test_host_conflicts_between_files_are_reported() -> None:
    code, lines = run(FIXTURES / "conflict")
    assert code == 1
    assert lines == [
        f"{FIXTURES / 'conflict' / 'newer.yaml'}:0: spec.hosts: host 'shared.example.com' is "
        "already claimed by the older policy shop/older",
        "1 valid, 1 invalid AuthPolicy document(s) in 2 file(s)",
    ]
    # Each file alone is fine.
    assert run(FIXTURES / "conflict" / "newer.yaml")[0] == 0


def test_missing_paths_fail(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    code, lines = run(FIXTURES / "good" / "orders.yaml", missing)
    assert code == 1
    assert lines == [
        f"{missing}: no such file or directory",
        "1 valid, 0 invalid AuthPolicy document(s) in 1 file(s)",
    ]


def test_no_policies_at_all_fails(tmp_path: Path) -> None:
    (tmp_path / "other.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    code, lines = run(tmp_path)
    assert code == 1
    assert lines == ["no AuthPolicy documents (apiVersion authz.dev/v1alpha1) found"]


def test_remote_keys_are_never_fetched(tmp_path: Path) -> None:
    # An unroutable issuer: validation must neither wait for it nor complain about it.
    path = tmp_path / "remote.yaml"
    path.write_text(
        (FIXTURES / "good" / "orders.yaml")
        .read_text()
        .replace("https://issuer.example.com/.well-known/jwks.json", "https://192.0.2.1/jwks")
    )
    assert run(path, quiet=True) == (0, [])
