"""Reading policy files: one broken document never hides another, hostile YAML is refused."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from authz.sources.yamlfiles import MAX_FILE_BYTES, discover, read, read_all, read_file
from tests.support.policies import auth_policy, to_yaml

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies"


def policy(name: str) -> str:
    return to_yaml(auth_policy(name, namespace=None, hosts=[f"{name}.example.com"]))


def names(path: Path) -> list[str | None]:
    return [
        doc.body["metadata"]["name"] if doc.body is not None else None for doc in read_file(path)
    ]


def test_a_broken_document_costs_only_itself() -> None:
    path = FIXTURES / "broken" / "syntax-error.yaml"
    documents = read_file(path)
    assert [d.location for d in documents] == [f"{path}:0", f"{path}:1", f"{path}:2"]
    assert names(path) == ["before", None, "after"]
    (problem,) = documents[1].problems
    assert problem.path == ""
    # The line number is the file's, not the document's.
    assert problem.message == "not valid YAML (line 15): expected ',' or ']', but got ':'"


def yaml_positions(path: Path) -> dict[str, int]:
    """Where each AuthPolicy sits in the file as YAML itself counts documents."""
    return {
        body["metadata"]["name"]: index
        for index, body in enumerate(yaml.safe_load_all(path.read_text()))
        if isinstance(body, dict) and body.get("kind") == "AuthPolicy"
    }


def test_doc_index_counts_documents_as_yaml_does() -> None:
    path = FIXTURES / "good" / "multi.yaml"
    documents = read_file(path)
    # "---" + a comment is an (empty) document; the ConfigMap is skipped but keeps its number.
    assert [d.location for d in documents] == [f"{path}:1", f"{path}:3"]
    assert names(path) == ["billing", "status-page"]
    assert yaml_positions(path) == {"billing": 1, "status-page": 3}


def test_index_numbering_around_skipped_and_empty_documents(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "# header comment, not a document\n---\n"
        + policy("a")
        + "---\n# only a comment\n---\napiVersion: v1\nkind: Secret\n---\n"
        + policy("b")
        + "...\n---\n"
        + policy("c")
    )
    assert [(d.location, d.body is not None) for d in read_file(path)] == [
        (f"{path}:0", True),
        (f"{path}:3", True),
        (f"{path}:4", True),
    ]
    assert yaml_positions(path) == {"a": 0, "b": 3, "c": 4}


def test_timestamps_stay_strings() -> None:
    (document,) = read_file(FIXTURES / "good" / "orders.yaml")
    assert document.body is not None
    assert document.body["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"


def test_json_files_are_read() -> None:
    assert names(FIXTURES / "good" / "demo.json") == ["demo-json"]


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("alias-bomb.yaml", "not valid YAML: aliases expand the document to more than 100000"),
        ("recursive-alias.yaml", "not valid YAML: an alias refers to an anchor that contains it"),
    ],
)
def test_hostile_aliases_are_refused(fixture: str, message: str) -> None:
    (document,) = read_file(FIXTURES / "broken" / fixture)
    assert document.body is None
    (problem,) = document.problems
    assert problem.message.startswith(message)


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliases.yaml"
    path.write_text(policy("a") + "  x: &x 1\n  y: [" + ", ".join(["*x"] * 101) + "]\n")
    (document,) = read_file(path)
    assert document.problems[0].message == "not valid YAML: more than 100 aliases in one document"


def test_a_few_harmless_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            apiVersion: authz.dev/v1alpha1
            kind: AuthPolicy
            metadata: {name: anchors}
            spec:
              hosts: &hosts [a.example.com]
              rules:
              - &open {name: open, allowAnonymous: true}
            """
        )
    )
    (document,) = read_file(path)
    assert document.body is not None
    assert document.body["spec"]["rules"][0] == {"name": "open", "allowAnonymous": True}


def test_deep_nesting_is_refused_not_crashed(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(policy("a") + "---\n" + "[" * 500 + "]" * 500 + "\n---\n" + policy("b"))
    documents = read_file(path)
    assert names(path) == ["a", None, "b"]
    assert documents[1].problems[0].message == "not valid YAML: the document is nested too deeply"


def test_a_value_that_does_not_fit_its_tag_costs_only_its_document(tmp_path: Path) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(policy("a") + "---\nx: !!bool maybe\n---\ny: !!int twelve\n---\n" + policy("b"))
    documents = read_file(path)
    assert names(path) == ["a", None, None, "b"]
    assert [p.message for d in documents for p in d.problems] == [
        "not valid YAML: a value does not fit its tag: 'maybe'",
        "not valid YAML: a value does not fit its tag: invalid literal for int() with base 10: "
        "'twelve'",
    ]


def test_other_kinds_are_skipped_and_wrong_versions_reported(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
        "- a list\n---\n"
        "just a string\n---\n"
        "apiVersion: authz.dev/v1beta9\nkind: AuthPolicy\nmetadata: {name: f}\n---\n"
        "kind: AuthPolicy\nmetadata: {name: g}\n"
    )
    documents = read_file(path)
    assert [d.location for d in documents] == [f"{path}:3", f"{path}:4"]
    assert [str(p) for d in documents for p in d.problems] == [
        "apiVersion: 'authz.dev/v1beta9' is not supported; use 'authz.dev/v1alpha1'",
        "apiVersion: None is not supported; use 'authz.dev/v1alpha1'",
    ]


@pytest.mark.parametrize(
    ("kind", "version"),
    [
        ("Authpolicy", "authz.dev/v1alpha1"),
        ("authpolicy", "v1"),
        ("AUTHPOLICY", None),
        ("AuthPolicies", "authz.dev/v1alpha1"),
        ("AuthzPolicy", "authz.dev/v1alpha1"),
    ],
)
def test_a_kind_that_is_almost_authpolicy_is_reported(
    tmp_path: Path, kind: str, version: str | None
) -> None:
    path = tmp_path / "typo.yaml"
    text = policy("t").replace("kind: AuthPolicy", f"kind: {kind}")
    if version is None:
        text = text.replace("apiVersion: authz.dev/v1alpha1\n", "")
    else:
        text = text.replace("apiVersion: authz.dev/v1alpha1", f"apiVersion: {version}")
    path.write_text(text)
    (document,) = read_file(path)
    assert document.body is None
    assert [str(p) for p in document.problems] == [
        f"kind: unknown kind {kind!r}; did you mean 'AuthPolicy'?"
    ]


@pytest.mark.parametrize("kind", ["ConfigMap", "Policy", "AuthorizationPolicy"])
def test_other_groups_kinds_get_no_hint(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(f"apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: x}}\n")
    assert read_file(path) == []


def test_read_says_whether_the_file_parsed_whole(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(policy("a") + "---\n" + policy("b"))
    assert read(path).whole
    path.write_text(policy("a") + "---\n" + policy("b") + "garbage: [\n")
    result = read(path)
    assert not result.whole
    assert [d.body is not None for d in result.documents] == [True, False]
    assert not read(tmp_path / "gone.yaml").whole
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert read(empty).empty
    assert read(empty).whole
    assert not read(path).empty


def test_a_non_utf8_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(policy("caf\u00e9").encode("latin-1"))
    (document,) = read_file(path)
    assert document.location == f"{path}:0"
    assert document.body is None
    assert document.problems[0].message.startswith("cannot read file: 'utf-8' codec can't decode")


def test_an_oversized_file_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(policy("a") + "#" * MAX_FILE_BYTES)
    (document,) = read_file(path)
    assert document.problems[0].message == f"file is larger than {MAX_FILE_BYTES} bytes"


def test_an_unreadable_path_is_one_problem(tmp_path: Path) -> None:
    (document,) = read_file(tmp_path / "gone.yaml")
    assert document.body is None
    assert document.problems[0].message.startswith("cannot read file: ")


def test_an_empty_file_has_no_documents(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing here\n---\n# nor here\n")
    assert read_file(tmp_path / "empty.yaml") == []
    assert read_file(tmp_path / "comments.yaml") == []


def test_discover_finds_policy_files_recursively(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy("a"))
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "b.yml").write_text(policy("b"))
    (tmp_path / "sub" / "deeper" / "c.json").write_text("{}")
    (tmp_path / "notes.txt").write_text(policy("no"))
    (tmp_path / ".hidden.yaml").write_text(policy("no"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text(policy("no"))
    (tmp_path / "dir.yaml").mkdir()
    explicit = tmp_path / "explicit.conf"
    explicit.write_text(policy("explicit"))
    assert discover((tmp_path, explicit, tmp_path / "missing")) == sorted(
        [
            tmp_path / "a.yaml",
            tmp_path / "sub" / "b.yml",
            tmp_path / "sub" / "deeper" / "c.json",
            explicit,
        ]
    )


def test_a_mounted_configmap_is_read_once_through_its_symlinks(tmp_path: Path) -> None:
    # What the kubelet writes: ..<timestamp>/ holds the files, ..data links to it, and each key
    # is a top-level symlink through ..data.
    mount = tmp_path / "policies"
    version = mount / "..2024_05_01_10_00_00.123"
    version.mkdir(parents=True)
    (version / "shop.yaml").write_text(policy("shop"))
    os.symlink(version.name, mount / "..data")
    os.symlink("..data/shop.yaml", mount / "shop.yaml")
    assert discover((mount,)) == [mount / "shop.yaml"]
    documents, files = read_all((mount,))
    assert files == [mount / "shop.yaml"]
    assert [d.location for d in documents] == [f"{mount / 'shop.yaml'}:0"]
    # An update swaps ..data to a new directory; the same path now reads the new content.
    new = mount / "..2024_05_02_10_00_00.456"
    new.mkdir()
    (new / "shop.yaml").write_text(policy("shop-v2"))
    os.symlink(new.name, mount / "..data_tmp")
    os.replace(mount / "..data_tmp", mount / "..data")
    assert names(mount / "shop.yaml") == ["shop-v2"]


def test_read_all_keeps_file_order() -> None:
    documents, files = read_all((FIXTURES / "good",))
    assert [f.name for f in files] == ["demo.json", "multi.yaml", "orders.yaml"]
    assert [d.body["metadata"]["name"] for d in documents if d.body is not None] == [
        "demo-json",
        "billing",
        "status-page",
        "orders",
    ]
