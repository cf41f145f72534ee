"""URL and request parsing: which resource, namespace, name and subresource.

Turns ``/api/v1/namespaces/ns/pods/name/status`` and
``/apis/group/version/...`` into a ``Target`` and reads the query options
(selectors, limit, watch flags, patch types) kube-apiserver understands.  Pure
functions; no HTTP framework types here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from firewall_lab.apiserver import errors

NAMESPACE_SUBRESOURCES = ("status", "finalize")
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}


@dataclasses.dataclass(frozen=True)
class Target:
    """A resource URL: ``namespace`` None means all namespaces or cluster scope."""

    group: str
    version: str
    plural: str = ""
    namespace: str | None = None
    name: str = ""
    subresource: str = ""


def parse_path(path: str) -> Target | None:
    """The resource a URL names, or None when it is not a resource URL."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return Target(group, version)
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    else:
        namespace = None
    if len(rest) > 3:
        return None
    plural, name, sub = [*rest, "", ""][:3]
    return Target(group, version, plural, namespace, name, sub)


@dataclasses.dataclass(frozen=True)
class ListOptions:
    label_selector: str | None
    field_selector: str | None
    limit: int
    cont: str
    watch: bool
    resource_version: str | None
    timeout_seconds: float | None
    bookmarks: bool


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def list_options(query: Mapping[str, str]) -> ListOptions:
    try:
        limit = int(query.get("limit") or 0)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
    except ValueError as exc:
        raise errors.BadRequest(f"invalid list option: {exc}") from exc
    return ListOptions(
        label_selector=query.get("labelSelector"),
        field_selector=query.get("fieldSelector"),
        limit=limit,
        cont=query.get("continue", ""),
        watch=_flag(query.get("watch")),
        resource_version=query.get("resourceVersion"),
        timeout_seconds=timeout,
        bookmarks=_flag(query.get("allowWatchBookmarks")),
    )


def wants_table(accept: str) -> bool:
    """True when the first acceptable media type asks for a ``Table``."""
    first = accept.split(",")[0]
    return "as=Table" in first.replace(" ", "")


def patch_type(content_type: str) -> str:
    kind = PATCH_TYPES.get(content_type.split(";")[0].strip())
    if kind is None:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}"
        )
    return kind
