"""The committed generated code in authz/_gen matches what `make protos` produces now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("genprotos", ROOT / "protos" / "genprotos.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["genprotos"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    committed = ROOT / "authz" / "_gen"
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    current = {
        p.relative_to(committed): p.read_bytes()
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(fresh) == sorted(current), "run `make protos` and commit authz/_gen"
    stale = [str(name) for name, data in fresh.items() if current[name] != data]
    assert stale == [], f"stale generated files (run `make protos`): {stale}"


def test_wire_field_numbers_match_envoy() -> None:
    """Spot-check the numbers Envoy's API reference fixes; a typo here breaks the wire silently."""
    from authz._gen.authz.envoy.v3 import ext_authz_pb2 as pb

    def number(message: type, field: str) -> int:
        value: int = message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]
        return value

    assert number(pb.CheckRequest, "attributes") == 1
    assert number(pb.AttributeContext, "source") == 1
    assert number(pb.AttributeContext, "request") == 4
    assert number(pb.AttributeContext.HttpRequest, "headers") == 3
    assert number(pb.AttributeContext.HttpRequest, "path") == 4
    assert number(pb.AttributeContext.HttpRequest, "host") == 5
    assert number(pb.CheckResponse, "denied_response") == 2
    assert number(pb.CheckResponse, "ok_response") == 3
    assert number(pb.CheckResponse, "dynamic_metadata") == 4
    assert number(pb.OkHttpResponse, "headers_to_remove") == 5
    assert number(pb.OkHttpResponse, "response_headers_to_add") == 6
    assert number(pb.HeaderValueOption, "append_action") == 3
