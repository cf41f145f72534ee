"""Per-kind admission: defaults, name rules and validation before storing.

``prepare_create`` and ``prepare_update`` turn a request body into the object
to store (metadata names checked, kind defaults filled, status handled as the
real strategies do, custom resources pruned, defaulted and validated against
their structural schema).  Pure functions over JSON; raise ``errors.ApiError``.
"""

from __future__ import annotations

import re
from typing import Any

from firewall_lab.apiserver import errors, validation
from firewall_lab.apiserver.resources import ResourceType

Json = dict[str, Any]
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
DNS_LABEL = re.compile(rf"^{_LABEL}$")
NS_NAME_LABEL = "kubernetes.io/metadata.name"


def check_name(rtype: ResourceType, name: str) -> None:
    """422 when ``name`` is not a valid object name for ``rtype``."""
    label_only = rtype.plural == "namespaces"
    pattern, limit = (DNS_LABEL, 63) if label_only else (SUBDOMAIN, 253)
    if name and pattern.match(name) and len(name) <= limit:
        return
    what = "RFC 1123 label" if label_only else "RFC 1123 subdomain"
    message = (
        f'Invalid value: "{name}": a lowercase {what} must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character"
    )
    if not name:
        message = "Required value: name or generateName is required"
    raise errors.Invalid.of(
        kind=rtype.kind,
        group=rtype.group,
        name=name,
        causes=[errors.cause("metadata.name", message)],
    )


def _crd_defaults(obj: Json) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind", "")
    names.setdefault("singular", kind.lower())
    names.setdefault("listKind", f"{kind}List")
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    name = obj["metadata"].get("name", "")
    causes = []
    if name != expected:
        causes.append(
            errors.cause(
                "metadata.name",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    if not spec.get("versions"):
        causes.append(errors.cause("spec.versions", "Required value", "FieldValueRequired"))
    if causes:
        raise errors.Invalid.of(
            kind="CustomResourceDefinition", group="apiextensions.k8s.io", name=name, causes=causes
        )
    conditions = [
        {
            "type": t,
            "status": "True",
            "reason": r,
            "message": m,
            "lastTransitionTime": obj["metadata"].get("creationTimestamp"),
        }
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    obj["status"] = {
        "conditions": conditions,
        "acceptedNames": dict(names),
        "storedVersions": [v.get("name") for v in spec["versions"] if v.get("storage")],
    }


def _kind_defaults(rtype: ResourceType, obj: Json, *, creating: bool) -> None:
    meta = obj["metadata"]
    if rtype.key == "/namespaces":
        meta.setdefault("labels", {})[NS_NAME_LABEL] = meta["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        status = obj.setdefault("status", {})
        status["phase"] = "Terminating" if meta.get("deletionTimestamp") else "Active"
    elif rtype.key == "/pods" and creating:
        obj["status"] = {"phase": "Pending"}
    elif rtype.key == "apiextensions.k8s.io/customresourcedefinitions":
        _crd_defaults(obj)


def admit_custom(rtype: ResourceType, obj: Json, old: Json | None, *, strict: bool) -> None:
    """Prune, default and validate a custom resource against its schema."""
    schema = rtype.schema or {}
    dropped = validation.prune(schema, obj, root=True)
    if strict and dropped:
        raise errors.BadRequest(
            "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in dropped)
        )
    validation.apply_defaults(schema, obj)
    body = _schema_view(obj)
    old_body = None if old is None else _schema_view(old)
    sub = dict(schema)
    props = dict(sub.get("properties") or {})
    for key in ("apiVersion", "kind"):
        props.pop(key, None)
    sub["properties"] = props
    sub["required"] = [k for k in sub.get("required") or [] if k not in ("apiVersion", "kind")]
    causes = validation.validate(sub, body, old=old_body)
    if causes:
        name = obj["metadata"].get("name", "")
        raise errors.Invalid.of(kind=rtype.kind, group=rtype.group, name=name, causes=causes)


def _schema_view(obj: Json) -> Json:
    """What a CRD schema validates: the object without apiVersion and kind,
    and of its metadata only name and generateName (as the API server does:
    a schema may constrain them, and root CEL rules may read them)."""
    view = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = obj.get("metadata") or {}
    view["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
    return view


def prepare(rtype: ResourceType, obj: Json, old: Json | None, *, strict: bool) -> Json:
    """Fill kind defaults and admit ``obj`` (create when ``old`` is None)."""
    obj["apiVersion"] = rtype.api_version
    obj["kind"] = rtype.kind
    _kind_defaults(rtype, obj, creating=old is None)
    if rtype.is_crd:
        admit_custom(rtype, obj, old, strict=strict)
    return obj


def check_kind(rtype: ResourceType, body: Json) -> None:
    """400 when the body names another kind or group than the URL."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request must be a JSON object")
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else rtype.group
    if (kind and kind != rtype.kind) or (api_version and group != rtype.group):
        raise errors.BadRequest(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({rtype.api_version})"
        )
