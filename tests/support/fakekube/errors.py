"""API errors as the real kube-apiserver spells them: a ``kind: Status`` body with code and reason.

Clients branch on ``reason`` and ``code`` (client-go's ``IsConflict``, ``IsNotFound``, the Python
client's ``ApiException.status``), and operators read ``message``; so every error the fake returns
goes through one of these constructors, whose wording follows the real server's.
"""

from __future__ import annotations

from typing import Any

from .resources import ResourceType

JSON = dict[str, Any]

_REASON_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error the server answers with a Status body instead of an object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: JSON | None = None,
        headers: dict[str, str] | None = None,
        list_meta: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.list_meta = list_meta or {}
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": dict(self.list_meta),
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str, **extra: Any) -> JSON:
    details: JSON = {"name": name, "group": rt.group, "kind": rt.plural}
    if not rt.group:
        del details["group"]
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{rt.qualified} "{name}" not found', details=_details(rt, name)
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", details={})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', details=_details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version and "
        "try again"
    )
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        details=_details(rt, name),
    )


def invalid(rt: ResourceType, name: str, causes: list[JSON]) -> ApiError:
    """422 Invalid; each cause is ``{"reason", "message", "field"}`` like field.Error."""
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    details: JSON = {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes}
    if not rt.group:
        del details["group"]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def expired(message: str, *, continue_token: str | None = None) -> ApiError:
    list_meta = {"continue": continue_token} if continue_token else None
    return ApiError(410, "Expired", message, list_meta=list_meta)


def unsupported_media_type(content_type: str, accepted: tuple[str, ...]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        details={"causes": [{"reason": "UnsupportedMediaType", "message": content_type}]},
    )


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        details={"causes": [{"message": message}]},
    )


def from_code(code: int, message: str | None = None, *, retry_after: int | None = None) -> ApiError:
    """An injected failure: the reason the real server uses for that code."""
    reason = _REASON_BY_CODE.get(code, "Unknown" if code < 500 else "InternalError")
    if code == 500 and message is None:
        return internal("injected by fakekube")
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    details: JSON | None = {"retryAfterSeconds": retry_after} if retry_after is not None else None
    return ApiError(
        code, reason, message or f"fakekube: injected {code}", details=details, headers=headers
    )
