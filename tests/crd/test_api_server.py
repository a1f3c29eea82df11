"""The CRD as the API server applies it: examples are accepted, broken policies are stopped.

A broken AuthPolicy is stopped at one of three gates, and the test pins which: the structural
schema (the API server answers 400/404/422), a CEL rule (x-kubernetes-validations, evaluated
here with cel-python because the fake API server does not run CEL), or - for what only code can
check - our compiler, whose verdict the controller writes into status. Whatever reaches the
controller (a cluster without CEL support included) is reported with exactly the messages
`authz validate` prints for the same file.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from authz.sources.yamlfiles import read_file
from tests.controller.harness import GROUP, PLURAL, Cluster, running
from tests.crd.cel import ROOT, cel_failures, loader_problems
from tests.support.fakekube import FakeKube
from tests.support.wait import until

GOOD = sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("tests/fixtures/policies/good/*")])
BROKEN = ROOT / "tests/fixtures/policies/broken"

#: Which gate stops each broken fixture (the ones YAML itself refuses are not API objects).
GATES = {
    "anonymous-scopes.yaml": "cel",
    "bad-jsonpath.yaml": "compiler",
    "bad-path-pattern.yaml": "compiler",
    "forbidden-header.yaml": "cel",
    "missing-issuers.yaml": "cel",
    "plain-http-jwks.yaml": "compiler",
    "unknown-field.yaml": "schema",
    "wrong-version.yaml": "schema",
}


def policies_in(path: Path) -> list[dict[str, Any]]:
    """The AuthPolicy documents of a file, parsed as the file loader parses them."""
    if path.name == "wrong-version.yaml":  # the loader reports it instead of returning it
        return [yaml.safe_load(path.read_text())]
    return [dict(doc.body) for doc in read_file(path) if doc.body is not None]


def contains(big: Any, small: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
    return bool(big == small)


def loader_message(document: dict[str, Any]) -> str:
    return "; ".join(map(str, loader_problems(document)))


def apply(k8s: Cluster, document: dict[str, Any], namespace: str) -> dict[str, Any]:
    """`kubectl apply --validate=strict`: unknown fields are refused, not pruned."""
    body = copy.deepcopy(document)
    body["metadata"] = {"name": body["metadata"]["name"], "namespace": namespace}
    group_version = str(body["apiVersion"])
    version = group_version.split("/", 1)[1]
    created = k8s.api.create_namespaced_custom_object(
        GROUP, version, namespace, PLURAL, body, field_validation="Strict"
    )
    assert isinstance(created, dict)
    return created


@pytest.mark.parametrize("path", GOOD, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_passes_schema_and_cel(k8s: Cluster, path: Path) -> None:
    documents = policies_in(path)
    assert documents
    for index, document in enumerate(documents):
        created = apply(k8s, document, f"ns{index}")
        assert contains(created["spec"], document["spec"])  # nothing pruned (defaults added)
        assert list(cel_failures(document)) == []
        assert loader_message(document) == ""


def test_the_gates_cover_every_broken_fixture() -> None:
    yaml_refused = {"alias-bomb.yaml", "recursive-alias.yaml", "syntax-error.yaml"}
    duplicates = {"duplicate-names.yaml"}  # two objects of one name cannot exist in a cluster
    assert {p.name for p in BROKEN.iterdir()} == set(GATES) | yaml_refused | duplicates


async def test_broken_policies_are_stopped_and_reported_like_authz_validate(
    kube: FakeKube, k8s: Cluster
) -> None:
    reached: dict[str, tuple[str, str]] = {}
    for index, (name, gate) in enumerate(sorted(GATES.items())):
        (document,) = policies_in(BROKEN / name)
        namespace = f"broken{index}"
        if gate == "schema":
            with pytest.raises(ApiException) as exc:
                apply(k8s, document, namespace)
            assert exc.value.status in (400, 404, 422), name
            continue
        apply(k8s, document, namespace)  # the fake runs no CEL: the compiler must catch it
        cel = set(cel_failures(document))
        assert bool(cel) == (gate == "cel"), name
        expected = loader_message(document)
        assert cel <= {p.split(": ", 1)[1] for p in expected.split("; ")}, name
        reached[f"{namespace}/{document['metadata']['name']}"] = (name, expected)

    async with running(kube):
        for key, (name, expected) in reached.items():
            namespace, policy_name = key.split("/")
            await until(partial(k8s.ready, policy_name, namespace=namespace), what=name)
            ready = k8s.ready(policy_name, namespace=namespace)
            assert ready is not None
            assert (ready["status"], ready["reason"], ready["message"]) == (
                "False",
                "Invalid",
                expected,
            ), name
