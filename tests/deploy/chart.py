"""Render the Helm chart with the real Helm engine (helm-python-sdk, no helm binary, no cluster).

`render(values)` returns the parsed Kubernetes objects the chart produces, the way `helm install`
would send them; the tests then look at those objects, not at template text.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "authz"
CRD_FILE = REPO_ROOT / "deploy" / "crds" / "authz.dev_authpolicies.yaml"
RELEASE = "gw"
NAMESPACE = "edge"
FULLNAME = f"{RELEASE}-authz"

Obj = dict[str, Any]


@contextmanager
def loaded_chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        yield chart


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two values documents the way Helm coalesces them (maps merge, the rest wins)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Rendered:
    """The objects of one rendering, and NOTES.txt."""

    objects: tuple[Obj, ...]
    notes: str

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Obj:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {o["kind"] for o in self.objects}

    @property
    def deployment(self) -> Obj:
        return self.one("Deployment")

    @property
    def pod_spec(self) -> Obj:
        spec: Obj = self.deployment["spec"]["template"]["spec"]
        return spec

    def container(self, name: str) -> Obj:
        """A container of the Deployment's pod, init (native sidecar) or regular."""
        spec = self.pod_spec
        found = [
            c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name
        ]
        assert len(found) == 1, f"expected one container {name}, got {len(found)}"
        container: Obj = found[0]
        return container

    def configmap_data(self, name: str) -> dict[str, str]:
        data: dict[str, str] = self.one("ConfigMap", name)["data"]
        return data

    @property
    def envoy_bootstrap_text(self) -> str:
        return self.configmap_data(f"{FULLNAME}-envoy")["envoy.yaml"]

    @property
    def envoy_bootstrap(self) -> Obj:
        loaded: Obj = yaml.safe_load(self.envoy_bootstrap_text)
        return loaded


def render(values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart for an install of release `gw`; raises helm_python's errors on failure."""
    with loaded_chart() as chart:
        files = chart.render(dict(values or {}), name=RELEASE, namespace=namespace, is_install=True)
    objects: list[Obj] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(objects=tuple(objects), notes=notes)


def env_of(container: Obj) -> dict[str, Any]:
    """A container's env as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def flag(container: Obj, name: str) -> str | None:
    """The value following `name` in a container's args, or None when absent."""
    args: list[str] = container.get("args", [])
    if name not in args:
        return None
    return args[args.index(name) + 1]
