"""OpenAPI v3 documents of the served custom resources, as kubectl explain reads them.

``index`` answers ``/openapi/v3``: one ``paths`` entry per group/version
(``apis/<group>/<version>``) with a ``serverRelativeURL`` that carries a hash
of the document (clients cache by it).  ``group_document`` answers
``/openapi/v3/apis/<group>/<version>``: an OpenAPI 3.0 document whose
``components.schemas`` hold each kind's ``openAPIV3Schema`` under the
Kubernetes name (``io.podwall.v1alpha1.FirewallRule``), tagged with
``x-kubernetes-group-version-kind``, and whose ``paths`` list the resource's
URLs with that kind on each operation (kubectl explain finds the kind of a
resource there, then the schema by kind) and the ``fieldValidation`` query
parameter (kubectl then leaves validation to the server).  Only custom
resources have schemas here; built-in kinds are not published (kubectl
falls back to its compiled-in types for them).  Pure functions over the
``Registry``; no I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from firewall_lab.apiserver.discovery import VERSION
from firewall_lab.apiserver.resources import Registry, ResourceType

Json = dict[str, Any]
FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "description": "Ignore, Warn or Strict: what to do with unknown or duplicate fields",
    "schema": {"type": "string", "uniqueItems": True},
}


def schema_name(rtype: ResourceType) -> str:
    """``io.podwall.v1alpha1.FirewallRule``: the group reversed, version, kind."""
    return ".".join([*reversed(rtype.group.split(".")), rtype.version, rtype.kind])


def _published(registry: Registry) -> dict[tuple[str, str], list[ResourceType]]:
    found: dict[tuple[str, str], list[ResourceType]] = {}
    for rtype in registry.all():
        if rtype.schema is not None and rtype.group:
            found.setdefault((rtype.group, rtype.version), []).append(rtype)
    return found


def _gvk(rtype: ResourceType, kind: str) -> list[Json]:
    return [{"group": rtype.group, "version": rtype.version, "kind": kind}]


def _paths(rtype: ResourceType) -> Json:
    base = f"/apis/{rtype.group}/{rtype.version}"
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    ref = {"$ref": f"#/components/schemas/{schema_name(rtype)}"}
    body = {"content": {"application/json": {"schema": ref}}}
    gvk = _gvk(rtype, rtype.kind)[0]

    def operation(**extra: Any) -> Json:
        return {"parameters": [FIELD_VALIDATION], "x-kubernetes-group-version-kind": gvk, **extra}

    item = {
        "get": {"x-kubernetes-group-version-kind": gvk},
        "put": operation(requestBody=body),
        "patch": operation(),
    }
    created = {"post": operation(requestBody=body)}
    return {
        f"{base}{scope}/{rtype.plural}": created,
        f"{base}{scope}/{rtype.plural}/{{name}}": item,
    }


def group_document(registry: Registry, group: str, version: str) -> Json | None:
    types = _published(registry).get((group, version))
    if not types:
        return None
    schemas: Json = {}
    paths: Json = {}
    for rtype in sorted(types, key=lambda t: t.kind):
        name = schema_name(rtype)
        schema = copy.deepcopy(rtype.schema or {})
        schema["x-kubernetes-group-version-kind"] = _gvk(rtype, rtype.kind)
        schemas[name] = schema
        schemas[f"{name}List"] = {
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            },
            "x-kubernetes-group-version-kind": _gvk(rtype, f"{rtype.kind}List"),
        }
        paths.update(_paths(rtype))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def index(registry: Registry) -> Json:
    paths = {}
    for group, version in sorted(_published(registry)):
        document = group_document(registry, group, version)
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64]
        key = f"apis/{group}/{version}"
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}
