"""API errors of the server double, each rendered as a Kubernetes ``Status``.

Every failure the handlers report is an ``ApiError`` subclass carrying the HTTP
code and the ``reason`` kube-apiserver uses; ``to_status`` builds the body.
This module does no I/O and knows nothing about HTTP frameworks.

    ApiError
    ├── BadRequest (400)        ├── Conflict (409)       ├── Expired (410)
    ├── Forbidden (403)         ├── AlreadyExists (409)  ├── Invalid (422)
    ├── NotFound (404)          ├── MethodNotAllowed (405)
    └── UnsupportedMediaType (415)
"""

from __future__ import annotations

import json
from typing import Any

Json = dict[str, Any]


class ApiError(Exception):
    """A request the server refuses; ``code``/``reason`` as kube-apiserver says them."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: Json | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_status(self) -> Json:
        status: Json = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _resource(plural: str, group: str) -> str:
    """``pods`` or ``firewallrules.podwall.io``, as kube-apiserver names them in messages."""
    return f"{plural}.{group}" if group else plural


def _details(kind: str, name: str, group: str) -> Json:
    details: Json = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    return details


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"

    @classmethod
    def of(cls, *, plural: str, group: str, name: str) -> NotFound:
        what = _resource(plural, group)
        return cls(f'{what} "{name}" not found', details=_details(plural, name, group))


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class AlreadyExists(ApiError):
    code = 409
    reason = "AlreadyExists"

    @classmethod
    def of(cls, *, plural: str, group: str, name: str) -> AlreadyExists:
        what = _resource(plural, group)
        return cls(f'{what} "{name}" already exists', details=_details(plural, name, group))


class Conflict(ApiError):
    code = 409
    reason = "Conflict"

    @classmethod
    def stale(cls, *, plural: str, group: str, name: str) -> Conflict:
        what = _resource(plural, group)
        return cls(
            f'Operation cannot be fulfilled on {what} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            details=_details(plural, name, group),
        )


class Expired(ApiError):
    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    """422 with ``details.causes``: one ``{reason, message, field}`` per problem."""

    code = 422
    reason = "Invalid"

    @classmethod
    def of(cls, *, kind: str, group: str, name: str, causes: list[Json]) -> Invalid:
        text = ", ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes)
        details = _details(kind, name, group)
        details["causes"] = causes
        return cls(f'{kind}.{group or "core"} "{name}" is invalid: {text}', details=details)


def shown(value: Any) -> str:
    """A value as kube-apiserver messages show it: JSON (``"a"``, ``true``,
    ``null``, ``{"k":1}``), never a Python repr."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value (``string``, ``integer``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    names = {float: "number", str: "string", dict: "object", list: "array"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), "object")


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> Json:
    """One entry of ``details.causes``."""
    return {"reason": reason, "message": message, "field": field}
