"""Structural schema handling for custom resources: pruning, defaulting and validation.

The real API server prunes fields its CRD schema does not declare (unless
``x-kubernetes-preserve-unknown-fields`` is set), applies ``default``s, and then answers 422 Invalid
with one cause per violation. A controller that writes a status field the CRD lacks must see it
vanish here just as it would in a cluster, or the bug ships. Validation uses jsonschema (the
OpenAPI v3 keywords a structural schema may use are draft-4 keywords, plus ``nullable``).

Not evaluated: CEL rules (``x-kubernetes-validations``), list-type/map-key uniqueness, and
validation ratcheting. The cause messages follow the real wording closely but not byte for byte.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]

from .errors import JSON

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time")  # type: ignore[untyped-decorator,unused-ignore]
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value))


def _to_jsonschema(schema: Any) -> Any:
    """Copy an OpenAPI v3 schema, turning ``nullable: true`` into an explicit null type."""
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


def _field(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def _cause(error: Any) -> list[JSON]:
    field = _field(list(error.absolute_path))
    keyword, want, value = error.validator, error.validator_value, error.instance
    if keyword == "required":
        present = value if isinstance(value, dict) else {}
        missing = [name for name in want if name not in present]
        return [
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": f"{field}.{name}" if field else name,
            }
            for name in missing
        ]
    reason, message = "FieldValueInvalid", f"Invalid value: {_show(value)}: {error.message}"
    if keyword == "type":
        reason = "FieldValueTypeInvalid"
        message = f"Invalid value: {_show(value)}: {field} in body must be of type {want}"
    elif keyword == "enum":
        reason = "FieldValueNotSupported"
        supported = ", ".join(_show(v) for v in want)
        message = f"Unsupported value: {_show(value)}: supported values: {supported}"
    elif keyword == "maxItems":
        reason, message = (
            "FieldValueTooMany",
            f"Too many: {len(value)}: must have at most {want} items",
        )
    elif keyword == "maxLength":
        reason, message = "FieldValueTooLong", f"Too long: may not be more than {want} bytes"
    elif keyword == "minItems":
        message = f"Invalid value: {len(value)}: {field} in body should have at least {want} items"
    elif keyword == "minLength":
        message = (
            f"Invalid value: {_show(value)}: {field} in body should be at least {want} chars long"
        )
    elif keyword == "pattern":
        message = f"Invalid value: {_show(value)}: {field} in body should match '{want}'"
    elif keyword == "minimum":
        message = (
            f"Invalid value: {value}: {field} in body should be greater than or equal to {want}"
        )
    elif keyword == "maximum":
        message = f"Invalid value: {value}: {field} in body should be less than or equal to {want}"
    elif keyword == "format":
        message = f"Invalid value: {_show(value)}: {field} in body must be of type {want}"
    return [{"reason": reason, "message": message, "field": field}]


class StructuralSchema:
    """One CRD version's openAPIV3Schema, ready to prune, default and validate objects."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema
        self._validator = jsonschema.Draft4Validator(
            _to_jsonschema(schema), format_checker=_FORMATS
        )

    def prune(self, obj: JSON) -> tuple[JSON, list[str]]:
        """A copy of ``obj`` without undeclared fields (and with defaults), plus what was dropped.

        ``apiVersion``, ``kind`` and ``metadata`` at the root are left alone: the server handles
        them itself, whatever the schema says.
        """
        out = copy.deepcopy(obj)
        dropped: list[str] = []
        properties = self._schema.get("properties") or {}
        for key in list(out):
            if key in ("apiVersion", "kind", "metadata"):
                continue
            if key in properties:
                out[key] = self._walk(properties[key], out[key], [key], dropped)
            elif not self._schema.get("x-kubernetes-preserve-unknown-fields"):
                dropped.append(key)
                del out[key]
        self._apply_defaults(self._schema, out, [], dropped)
        return out, dropped

    def _walk(self, schema: dict[str, Any], value: Any, path: list[Any], dropped: list[str]) -> Any:
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [
                self._walk(schema["items"], item, [*path, i], dropped)
                for i, item in enumerate(value)
            ]
        if not isinstance(value, dict):
            return value
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            if key in properties:
                value[key] = self._walk(properties[key], value[key], [*path, key], dropped)
            elif isinstance(additional, dict):
                value[key] = self._walk(additional, value[key], [*path, key], dropped)
            elif not preserve and additional is not True:
                dropped.append(_field([*path, key]))
                del value[key]
        self._apply_defaults(schema, value, path, dropped)
        return value

    def _apply_defaults(
        self, schema: dict[str, Any], value: JSON, path: list[Any], dropped: list[str]
    ) -> None:
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = self._walk(sub, copy.deepcopy(sub["default"]), [*path, key], dropped)

    def validate(self, obj: JSON) -> list[JSON]:
        """Causes (``reason``/``message``/``field``) for every schema violation, in path order."""
        body = {k: v for k, v in obj.items() if k != "metadata"}
        causes: list[JSON] = []
        for error in sorted(
            self._validator.iter_errors(body), key=lambda e: list(map(str, e.path))
        ):
            for cause in _cause(error):
                if cause not in causes:
                    causes.append(cause)
        return causes
