"""PATCH bodies: JSON merge patch, strategic merge patch, JSON patch.

Strategic merge patch is the subset podwall's kinds need: maps merge
recursively, ``null`` deletes, lists listed in ``MERGE_KEYS`` merge by their key
(``$patch: delete`` items remove, ``$patch: replace`` replaces), ``finalizers``
merge as a set (with ``$deleteFromPrimitiveList/finalizers``), every other list
is replaced; ``$setElementOrder``/``$retainKeys`` directives are accepted and
ignored.  Pure functions, no I/O; failures raise ``errors.ApiError``.
"""

from __future__ import annotations

import copy
from typing import Any

from firewall_lab.apiserver import errors

Json = dict[str, Any]

# list field name -> merge key (as the Go types declare patchMergeKey)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "podIPs": "ip",
    "hostAliases": "ip",
    "containerStatuses": "name",
}
SET_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch (the documented subset)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    deletions: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith(("$setElementOrder/", "$retainKeys", "$patch")):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletions[key.split("/", 1)[1]] = list(value or [])
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    for key, gone in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in gone]
    return result


def _merge_list(name: str, current: Any, patch: list[Any]) -> list[Any]:
    if not isinstance(current, list):
        current = []
    if name in SET_LISTS:
        return list(current) + [v for v in patch if v not in current]
    key = MERGE_KEYS.get(name)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [copy.deepcopy(v) for v in patch]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    merged = list(current)
    for item in patch:
        index = next(
            (
                n
                for n, old in enumerate(merged)
                if isinstance(old, dict) and old.get(key) == item.get(key)
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.BadRequest(f"invalid JSON pointer {errors.shown(path)}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise errors.Invalid(f"path {errors.shown(path)} does not exist") from exc
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    try:
        return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise errors.Invalid(f"path {errors.shown(path)} does not exist") from exc


def _add(doc: Any, path: str, value: Any, *, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path), parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if replace:
            parent[index] = value
        else:
            parent.insert(index, value)
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise errors.Invalid(f"replace: path {errors.shown(path)} does not exist")
        parent[last] = value
    else:
        raise errors.Invalid(f"path {errors.shown(path)} does not exist")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _parent(doc, parts, path)
    try:
        if isinstance(parent, list):
            parent.pop(int(parts[-1]))
        else:
            del parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise errors.Invalid(f"remove: path {errors.shown(path)} does not exist") from exc
    return doc


def json_patch(target: Json, operations: Any) -> Json:
    """RFC 6902 JSON patch; a failed ``test`` raises 422 ``Invalid``."""
    if not isinstance(operations, list):
        raise errors.BadRequest("a JSON patch must be a list of operations")
    doc: Any = copy.deepcopy(target)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "test":
            if _get(doc, path) != op.get("value"):
                raise errors.Invalid(f"the server rejected our request: test failed at {path}")
        elif kind in ("add", "replace"):
            doc = _add(doc, path, copy.deepcopy(op.get("value")), replace=kind == "replace")
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind in ("copy", "move"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value, replace=False)
        else:
            raise errors.BadRequest(f"unknown JSON patch operation {errors.shown(kind)}")
    if not isinstance(doc, dict):
        raise errors.BadRequest("a JSON patch must leave an object")
    return doc
