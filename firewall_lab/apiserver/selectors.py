"""Label and field selectors as kube-apiserver parses them from query strings.

Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``,
``k`` (exists) and ``!k`` (does not exist), comma-separated and ANDed.  Field
selectors: ``path=v``, ``path==v``, ``path!=v`` over dotted paths
(``metadata.name``, ``spec.nodeName``, ``status.phase``...).  Pure functions, no
I/O.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from firewall_lab.apiserver import errors

Json = dict[str, Any]

_SET_RE = re.compile(r"^\s*(!?)([^\s=!(),]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_CMP_RE = re.compile(r"^\s*([^\s=!(),]+)\s*(==|!=|=)\s*([^\s=!(),]*)\s*$")


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_labels(text: str | None) -> list[Requirement]:
    """Parse a label selector; raises ``BadRequest`` on syntax errors."""
    out: list[Requirement] = []
    for term in _split_terms(text or ""):
        cmp = _CMP_RE.match(term)
        if cmp:
            op = "!=" if cmp.group(2) == "!=" else "="
            out.append(Requirement(cmp.group(1), op, (cmp.group(3),)))
            continue
        found = _SET_RE.match(term)
        if not found or (found.group(1) and found.group(3)):
            raise errors.BadRequest(f"unable to parse requirement: {errors.shown(term)}")
        bang, key, op, values = found.groups()
        if op:
            vals = tuple(v.strip() for v in values.split(",") if v.strip())
            out.append(Requirement(key, op, vals))
        else:
            out.append(Requirement(key, "!" if bang else "exists"))
    return out


def _requirement_ok(req: Requirement, labels: dict[str, str]) -> bool:
    present, value = req.key in labels, labels.get(req.key)
    if req.op == "exists":
        return present
    if req.op == "!":
        return not present
    if req.op in ("=", "in"):
        return present and value in req.values
    return not present or value not in req.values  # "!=", "notin"


def labels_match(requirements: list[Requirement], labels: dict[str, str] | None) -> bool:
    return all(_requirement_ok(req, labels or {}) for req in requirements)


def parse_fields(text: str | None) -> list[Requirement]:
    """Parse a field selector (only ``=``, ``==`` and ``!=``)."""
    out: list[Requirement] = []
    for term in _split_terms(text or ""):
        cmp = _CMP_RE.match(term)
        if not cmp:
            raise errors.BadRequest(f"invalid field selector: {errors.shown(term)}")
        op = "!=" if cmp.group(2) == "!=" else "="
        out.append(Requirement(cmp.group(1), op, (cmp.group(3),)))
    return out


def field_value(obj: Json, path: str) -> str:
    """The string form of the field at a dotted path; ``""`` when missing."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def fields_match(requirements: list[Requirement], obj: Json) -> bool:
    for req in requirements:
        value = field_value(obj, req.key)
        if (value == req.values[0]) != (req.op == "="):
            return False
    return True


@dataclasses.dataclass(frozen=True)
class Filter:
    """Namespace + label + field filter of one list or watch request."""

    namespace: str | None
    labels: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @classmethod
    def parse(
        cls, *, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Filter:
        return cls(
            namespace, tuple(parse_labels(label_selector)), tuple(parse_fields(field_selector))
        )

    def matches(self, obj: Json) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return labels_match(list(self.labels), meta.get("labels")) and fields_match(
            list(self.fields), obj
        )
