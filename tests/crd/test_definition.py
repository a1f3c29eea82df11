"""The CRD file itself: what it serves and stores, how kubectl shows it, and that the sidecar
validates with exactly its schema and words its CEL messages as the loader does."""

from __future__ import annotations

from typing import Any

import yaml

from authz.policy import compile as comp
from authz.policy.schema import API_VERSION, KIND, openapi_schema
from tests.crd.cel import CRD_FILE


def test_the_crd_serves_and_stores_exactly_v1alpha1() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        "authz.dev",
        "Namespaced",
        "AuthPolicy",
    )
    assert (spec["names"]["plural"], spec["names"]["shortNames"]) == ("authpolicies", ["ap"])
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Hosts", "Ready", "Reason", "Age", "Message"]  # Message: -o wide only


def test_the_sidecar_validates_with_the_crds_schema() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert openapi_schema() == crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema = openapi_schema()
    assert schema["required"] == ["spec"]
    assert {"hosts", "issuers", "rules", "response"} <= set(
        schema["properties"]["spec"]["properties"]
    )
    assert (API_VERSION, KIND) == ("authz.dev/v1alpha1", "AuthPolicy")


def test_every_cel_message_is_a_loader_message() -> None:
    crd_messages: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            crd_messages.update(r["message"] for r in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(openapi_schema())
    loader = {v for k, v in vars(comp).items() if k.startswith("MSG_")}
    assert crd_messages == loader
