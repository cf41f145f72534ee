"""Which RBAC permissions a recorded list of API requests needs, and whether rules grant them.

``permission_of(method, path, query)`` classifies one HTTP request the way the
Kubernetes API server's request-info resolver does before authorization: a
``Permission`` (verb, API group, resource, subresource) for resource requests,
``Discovery`` for the non-resource paths every authenticated user may read
(``system:discovery`` and ``system:public-info-viewer``), and ``Forbidden`` for
other non-resource paths (those need a ``nonResourceURLs`` rule, which the agent
must never need).  ``granted(rules)`` expands ClusterRole rules (without
wildcards) into the same tuples, so two sets can be compared.

The recorded file (``tests/e2e/recorded_agent_calls.json``) is written by the
agent e2e tests from the API server double's request log::

    {"source": "<test that recorded it>",
     "requests": [{"method": "GET", "path": "/api/v1/pods", "query": "watch=true",
                   "user_agent": "kopf/1.45.2"}, ...]}

Pure: no I/O except ``load_recorded``/``save_recorded``; no Kubernetes client.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: request methods → the verb before list/watch/deletecollection are told apart
METHOD_VERBS = {
    "GET": "get",
    "HEAD": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
#: a path segment after /namespaces/NAME that is a subresource of the namespace
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
#: non-resource paths that the default ClusterRoles let every authenticated user GET
DISCOVERY_EXACT = frozenset({"/api", "/apis", "/version", "/healthz", "/livez", "/readyz"})
DISCOVERY_PREFIXES = ("/api/", "/apis/", "/openapi/", "/healthz/", "/livez/", "/readyz/")
#: query keys kept in a recorded file: the ones that decide the verb, and what was selected
STABLE_QUERY_KEYS = frozenset({"watch", "fieldSelector"})
TRUE_WORDS = frozenset({"1", "t", "T", "true", "TRUE", "True"})


class AuditError(Exception):
    """A request or a rule this module cannot classify."""


@dataclass(frozen=True, order=True, slots=True)
class Permission:
    """One RBAC permission: ``verb`` on ``resource[/subresource]`` in API ``group``."""

    verb: str
    group: str
    resource: str
    subresource: str = ""

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        return f"{self.verb} {self.group or 'core'}/{self.rbac_resource}"


@dataclass(frozen=True, slots=True)
class Discovery:
    """A non-resource request that default bindings already allow."""

    path: str


@dataclass(frozen=True, slots=True)
class Forbidden:
    """A non-resource request that would need a ``nonResourceURLs`` rule."""

    method: str
    path: str


Classified = Permission | Discovery | Forbidden


def permission_of(method: str, path: str, query: str = "") -> Classified:
    """Classify one request as the API server's request-info resolver does."""
    verb = METHOD_VERBS.get(method.upper())
    if verb is None:
        raise AuditError(f"unknown HTTP method {method!r}")
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return _non_resource(method, path)
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    # /namespaces/NS/<resource>/... names a resource inside NS; /namespaces/NS[/status]
    # is the namespace object itself
    if rest[:1] == ["namespaces"] and len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
        rest = rest[2:]
    if not rest:
        raise AuditError(f"no resource in {path!r}")
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = "/".join(rest[2:])
    if not name:
        verb = _collection_verb(verb, query)
    return Permission(verb=verb, group=group, resource=resource, subresource=subresource)


def _collection_verb(verb: str, query: str) -> str:
    """get on a collection is list or watch; delete on one is deletecollection."""
    if verb == "get":
        values = urllib.parse.parse_qs(query).get("watch", [])
        return "watch" if values and values[-1] in TRUE_WORDS else "list"
    if verb == "delete":
        return "deletecollection"
    return verb


def _non_resource(method: str, path: str) -> Discovery | Forbidden:
    normal = "/" + "/".join(part for part in path.split("/") if part)
    readable = normal in DISCOVERY_EXACT or normal.startswith(DISCOVERY_PREFIXES)
    if method.upper() in ("GET", "HEAD") and readable:
        return Discovery(path=normal)
    return Forbidden(method=method.upper(), path=normal)


def required(requests: Iterable[Mapping[str, str]]) -> tuple[set[Permission], list[Forbidden]]:
    """The permissions ``requests`` need, and the requests no resource rule can allow."""
    needed: set[Permission] = set()
    forbidden: list[Forbidden] = []
    for request in requests:
        found = permission_of(request["method"], request["path"], request.get("query", ""))
        if isinstance(found, Permission):
            needed.add(found)
        elif isinstance(found, Forbidden):
            forbidden.append(found)
    return needed, forbidden


def granted(rules: Sequence[Mapping[str, Any]]) -> set[Permission]:
    """Every permission the (wildcard-free) ``rules`` grant, one tuple each."""
    out: set[Permission] = set()
    for index, rule in enumerate(rules):
        if rule.get("nonResourceURLs") or rule.get("resourceNames"):
            raise AuditError(f"rule {index}: nonResourceURLs/resourceNames are not audited")
        groups, resources, verbs = (
            list(rule.get(key, [])) for key in ("apiGroups", "resources", "verbs")
        )
        if "*" in groups + verbs or any("*" in r for r in resources):
            raise AuditError(f"rule {index} has a wildcard")
        for group in groups:
            for resource in resources:
                base, _, sub = resource.partition("/")
                for verb in verbs:
                    out.add(Permission(verb=verb, group=group, resource=base, subresource=sub))
    return out


@dataclass(frozen=True, slots=True)
class Comparison:
    """What the rules lack (``missing``) and grant in vain (``surplus``)."""

    missing: frozenset[Permission]
    surplus: frozenset[Permission]
    forbidden: tuple[Forbidden, ...]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.surplus or self.forbidden)

    def explain(self) -> str:
        lines = [f"missing: {p}" for p in sorted(self.missing)]
        lines += [f"surplus (never used): {p}" for p in sorted(self.surplus)]
        lines += [f"needs nonResourceURLs: {f.method} {f.path}" for f in self.forbidden]
        return "\n".join(lines) or "exact"


def compare(
    rules: Sequence[Mapping[str, Any]], requests: Iterable[Mapping[str, str]]
) -> Comparison:
    """Compare ClusterRole ``rules`` with the permissions ``requests`` needed."""
    needed, forbidden = required(requests)
    have = granted(rules)
    return Comparison(
        missing=frozenset(needed - have),
        surplus=frozenset(have - needed),
        forbidden=tuple(forbidden),
    )


def select(requests: Iterable[Mapping[str, str]], *, user_agent: str) -> list[Mapping[str, str]]:
    """The requests whose User-Agent contains ``user_agent`` (e.g. the agent's, not kubectl's)."""
    return [r for r in requests if user_agent in r.get("user_agent", "")]


def _stable_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return urllib.parse.urlencode(sorted((k, v) for k, v in pairs if k in STABLE_QUERY_KEYS))


def load_recorded(path: str) -> list[Mapping[str, str]]:
    """The request list of a recorded file (see the module docstring)."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    requests = data.get("requests") if isinstance(data, dict) else None
    if not isinstance(requests, list):
        raise AuditError(f"{path}: no 'requests' list")
    return requests


def save_recorded(path: str, requests: Iterable[Mapping[str, str]], *, source: str) -> None:
    """Write a recorded file: the fields the audit reads, volatile query keys
    (resourceVersion, limit, continue...) dropped, deduplicated, sorted."""
    keys = ("method", "path", "query", "user_agent")
    unique = {
        (r["method"], r["path"], _stable_query(r.get("query", "")), r.get("user_agent", ""))
        for r in requests
    }
    rows = [dict(zip(keys, row, strict=True)) for row in sorted(unique)]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"source": source, "requests": rows}, handle, indent=1)
        handle.write("\n")
