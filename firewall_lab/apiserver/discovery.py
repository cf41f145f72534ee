"""Discovery documents: ``/api``, ``/apis``, group and group-version resource lists.

Legacy (unaggregated) discovery only: kubectl and kopf fall back to it when the
answer is plain ``application/json``.  Subresources appear as ``plural/status``
entries, as kopf needs them to patch status.  Pure functions over the
``Registry``; no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from firewall_lab.apiserver.resources import VERBS, Registry, ResourceType

Json = dict[str, Any]
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-podwall",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version ordering: GA > beta > alpha, then higher numbers first."""
    found = _KUBE_VERSION.match(version)
    if not found:
        return (0, 0, 0)
    major, stage, minor = found.groups()
    rank = {"alpha": 1, "beta": 2}.get(stage or "", 3)
    return (rank, int(major), int(minor or 0))


def api_versions(server_address: str) -> Json:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> Json:
    ordered = sorted(versions, key=version_priority, reverse=True)
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in ordered]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group(registry: Registry, name: str) -> Json | None:
    versions = registry.group_versions().get(name)
    if not versions or not name:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def api_group_list(registry: Registry) -> Json:
    groups = [_group(g, v) for g, v in sorted(registry.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _entry(rtype: ResourceType) -> list[Json]:
    main: Json = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": VERBS if rtype.namespaced else [v for v in VERBS if v != "deletecollection"],
    }
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    out = [main]
    if rtype.status_subresource:
        out.append(
            {
                "name": f"{rtype.plural}/status",
                "singularName": "",
                "namespaced": rtype.namespaced,
                "kind": rtype.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return out


def resource_list(registry: Registry, group: str, version: str) -> Json | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = [
        entry for rtype in sorted(types, key=lambda t: t.plural) for entry in _entry(rtype)
    ]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
