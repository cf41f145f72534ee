"""Server-side ``Table`` responses for ``kubectl get``.

Built-in kinds get kubectl's usual columns (pods: READY, STATUS, RESTARTS, AGE
and wide IP/NODE; namespaces: STATUS; networkpolicies: POD-SELECTOR ...);
custom resources get their ``additionalPrinterColumns`` (simple JSONPath:
fields, ``[n]``, ``[*]``, ``[?(@.k=="v")]``; ``date`` columns rendered as ages,
as apiextensions-apiserver does).  Pure functions over JSON, no I/O.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from firewall_lab.apiserver.resources import ResourceType

Json = dict[str, Any]
_TOKEN = re.compile(
    r"\.([A-Za-z0-9_\-/]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.\-]+)\s*(==|!=)\s*"
    r"[\"']([^\"']*)[\"']\)\]"
)


def _filter_ok(item: Any, key: str, op: str, wanted: str) -> bool:
    found = jsonpath(item, "." + key)
    text = (
        "" if not found else str(found[0]).lower() if isinstance(found[0], bool) else str(found[0])
    )
    return bool(found) and text == wanted if op == "==" else text != wanted


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Values at a simple JSONPath (``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``)."""
    path = path.strip().removeprefix("{").removesuffix("}").removeprefix("$")
    nodes = [obj]
    for match in _TOKEN.finditer(path):
        field, index, fkey, op, fval = match.groups()
        out: list[Any] = []
        for node in nodes:
            if field is not None and isinstance(node, dict) and field in node:
                out.append(node[field])
            elif index == "*" and isinstance(node, list):
                out.extend(node)
            elif index is not None and index != "*" and isinstance(node, list):
                out.extend(node[int(index) : int(index) + 1])
            elif fkey is not None and isinstance(node, list):
                out.extend(i for i in node if _filter_ok(i, fkey, op, fval))
        nodes = out
    return nodes


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration``."""
    sec = int(seconds)
    if sec < -1:
        return "<invalid>"
    if sec < 0:
        return "0s"
    if sec < 120:
        return f"{sec}s"
    minutes, hours = sec // 60, sec // 3600
    if minutes < 10:
        return f"{minutes}m{sec % 60}s" if sec % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // (24 * 365), (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // (24 * 365)}y"


def age(timestamp: Any) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    when = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return human_duration((datetime.datetime.now(datetime.UTC) - when).total_seconds())


def _selector_text(selector: Json | None) -> str:
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        values = ",".join(expr.get("values") or [])
        op = expr.get("operator", "")
        if op in ("In", "NotIn"):
            parts.append(f"{expr.get('key')} {op.lower()} ({values})")
        else:
            parts.append(("!" if op == "DoesNotExist" else "") + str(expr.get("key")))
    return ",".join(parts) or "<none>"


def _pod_cells(pod: Json) -> list[Any]:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else status.get("phase", "")
    return [
        f"{ready}/{len(spec.get('containers') or [])}",
        phase,
        restarts,
        age(pod["metadata"].get("creationTimestamp")),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
    ]


def _node_cells(node: Json) -> list[Any]:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
    roles = sorted(
        k.split("/", 1)[1]
        for k in node["metadata"].get("labels") or {}
        if k.startswith("node-role.kubernetes.io/")
    )
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return [
        "Ready" if ready == "True" else "NotReady",
        ",".join(roles) or "<none>",
        age(node["metadata"].get("creationTimestamp")),
        info.get("kubeletVersion", ""),
    ]


Column = tuple[str, str, int]  # name, type, priority
_AGE: Column = ("Age", "string", 0)
BUILTIN_COLUMNS: dict[str, tuple[list[Column], Callable[[Json], list[Any]]]] = {
    "/pods": (
        [
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "integer", 0),
            _AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        _pod_cells,
    ),
    "/namespaces": (
        [("Status", "string", 0), _AGE],
        lambda o: [
            (o.get("status") or {}).get("phase", ""),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "/nodes": (
        [("Status", "string", 0), ("Roles", "string", 0), _AGE, ("Version", "string", 0)],
        _node_cells,
    ),
    "networking.k8s.io/networkpolicies": (
        [("Pod-Selector", "string", 0), _AGE],
        lambda o: [
            _selector_text((o.get("spec") or {}).get("podSelector")),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "/events": (
        [
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            _AGE,
        ],
        lambda o: [
            o.get("type", ""),
            o.get("reason", ""),
            "{}/{}".format(
                (o.get("involvedObject") or {}).get("kind", "").lower(),
                (o.get("involvedObject") or {}).get("name", ""),
            ),
            o.get("message", ""),
            age(o["metadata"].get("creationTimestamp")),
        ],
    ),
    "apiextensions.k8s.io/customresourcedefinitions": (
        [("Created At", "date", 0)],
        lambda o: [o["metadata"].get("creationTimestamp")],
    ),
}


def _custom_cell(column: Json, obj: Json) -> Any:
    values = jsonpath(obj, column.get("jsonPath", ""))
    if not values:
        return None
    kind = column.get("type", "string")
    if kind == "date":
        return age(values[0])
    if len(values) > 1:
        return ",".join(str(v) for v in values)
    value = values[0]
    if kind in ("integer", "number", "boolean") and not isinstance(value, (dict, list)):
        return value
    return (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


def _columns(rtype: ResourceType) -> tuple[list[Column], Callable[[Json], list[Any]]]:
    if rtype.is_crd and rtype.printer_columns:
        cols = [
            (c.get("name", ""), c.get("type", "string"), int(c.get("priority", 0)))
            for c in rtype.printer_columns
        ]
        return cols, lambda o: [_custom_cell(c, o) for c in rtype.printer_columns]
    if not rtype.is_crd and rtype.key in BUILTIN_COLUMNS:
        return BUILTIN_COLUMNS[rtype.key]
    return [_AGE], lambda o: [age(o["metadata"].get("creationTimestamp"))]


def table(rtype: ResourceType, objs: list[Json], *, list_meta: Json, include: str) -> Json:
    """A ``meta.k8s.io/v1`` Table of ``objs`` (``include``: None, Metadata, Object)."""
    columns, cells = _columns(rtype)
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    definitions += [
        {
            "name": n,
            "type": "string" if t == "date" else t,
            "format": "",
            "priority": p,
            "description": n,
        }
        for n, t, p in columns
    ]
    rows = []
    for obj in objs:
        row: Json = {"cells": [obj["metadata"]["name"], *cells(obj)]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
