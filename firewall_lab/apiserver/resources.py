"""The resource registry: which kinds the server serves, built-in and from CRDs.

A ``ResourceType`` describes one served group/version/plural (scope, kind,
names, verbs, status subresource, schema and printer columns for CRDs).  The
``Registry`` answers lookups for the URL router, discovery and tables.  Pure
data: no I/O, no storage access.
"""

from __future__ import annotations

import dataclasses
from typing import Any

Json = dict[str, Any]

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclasses.dataclass(frozen=True)
class ResourceType:
    """One served resource: group ``""`` is the core group."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    schema: Json | None = None  # openAPIV3Schema of a CRD version
    printer_columns: tuple[Json, ...] = ()
    storage: str = ""  # storage key shared by all versions; "" means group/plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key: objects of all versions of one resource live together."""
        return self.storage or f"{self.group}/{self.plural}"

    @property
    def is_crd(self) -> bool:
        return self.schema is not None or bool(self.storage)


def _builtin(
    group: str, version: str, plural: str, kind: str, namespaced: bool, **kw: Any
) -> ResourceType:
    return ResourceType(group, version, plural, kind.lower(), kind, namespaced, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _builtin(
        "", "v1", "namespaces", "Namespace", False, short_names=("ns",), status_subresource=True
    ),
    _builtin(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
    ),
    _builtin("", "v1", "nodes", "Node", False, short_names=("no",), status_subresource=True),
    _builtin("", "v1", "events", "Event", True, short_names=("ev",)),
    _builtin("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
    _builtin("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",)),
    _builtin(
        "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, short_names=("netpol",)
    ),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
    ),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
    _builtin(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        short_names=("ds",),
        categories=("all",),
        status_subresource=True,
    ),
)


def from_crd(crd: Json) -> list[ResourceType]:
    """The served versions of a CustomResourceDefinition."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    plural = names.get("plural", "")
    served = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        served.append(
            ResourceType(
                group=group,
                version=version.get("name", ""),
                plural=plural,
                singular=names.get("singular") or names.get("kind", "").lower(),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in (version.get("subresources") or {}),
                schema=schema,
                printer_columns=tuple(version.get("additionalPrinterColumns", ())),
                storage=f"{group}/{plural}",
            )
        )
    return served


class Registry:
    """Served resources by group/version/plural; CRDs come and go at run time."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        for rtype in BUILTINS:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group name → served versions (preferred first); the core group is ``""``."""
        out: dict[str, list[str]] = {}
        for group, version, _ in self._types:
            versions = out.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for (g, v, _), t in self._types.items() if (g, v) == (group, version)]

    def by_storage(self, key: str) -> list[ResourceType]:
        return [t for t in self._types.values() if t.key == key]

    def put_crd(self, crd: Json) -> list[ResourceType]:
        """Serve (or re-serve) the versions of ``crd``; returns them."""
        name = crd.get("metadata", {}).get("name", "")
        self.drop_crd(name)
        served = from_crd(crd)
        for rtype in served:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self._crd_types[name] = served
        return served

    def drop_crd(self, name: str) -> list[ResourceType]:
        """Stop serving the versions of the CRD called ``name``."""
        served = self._crd_types.pop(name, [])
        for rtype in served:
            self._types.pop((rtype.group, rtype.version, rtype.plural), None)
        return served
