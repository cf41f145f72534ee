"""Realization: on how many nodes is each policy's current generation programmed?

Each agent writes, in its own ``NodeFirewall`` status, the generation of every
FirewallRule (``programmedGenerations``) and NetworkPolicy
(``programmedPolicies``) its kernel holds, and its problems (strings
``"<severity>: <Kind> <ns/name>: <reason>"``, ``problems.Problem.__str__``).
``summarise`` adds these up for every current object: programmed on the nodes
whose entry equals the object's ``metadata.generation``, out of every node
that has a NodeFirewall (a stopped agent's kernel keeps what it had, so its
old entries still count; what changed since does not).  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
PROBLEM = re.compile(r"^(error|warning): (\S+) (\S+): (.*)$", re.S)
#: kind → the NodeFirewall status field that lists it
FIELDS = {"NetworkPolicy": "programmedPolicies", "FirewallRule": "programmedGenerations"}


@dataclass(frozen=True, slots=True)
class NodeReport:
    name: str
    backend: str
    last_sync: str
    last_error: str
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ObjectReport:
    """One NetworkPolicy or FirewallRule: where its generation is programmed."""

    kind: str
    name: str  # ns/name for NetworkPolicies
    generation: int
    programmed: tuple[str, ...]  # nodes
    missing: tuple[str, ...]  # nodes without this generation
    problems: tuple[str, ...] = ()  # "severity: reason", from any node

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True, slots=True)
class Report:
    nodes: tuple[NodeReport, ...]
    objects: tuple[ObjectReport, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Every object programmed on every node, and no object has an error."""
        return all(
            o.complete and not any(p.startswith("error") for p in o.problems) for o in self.objects
        )


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _problems(nodefirewalls: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for nfw in nodefirewalls:
        for text in (nfw.get("status") or {}).get("problems") or []:
            match = PROBLEM.match(str(text))
            if match:
                severity, kind, name, reason = match.groups()
                found.setdefault((kind, name), set()).add(f"{severity}: {reason}")
    return found


def summarise(
    nodefirewalls: Sequence[Mapping[str, Any]], objects: Iterable[Mapping[str, Any]]
) -> Report:
    """The realization of every NetworkPolicy and FirewallRule in ``objects``."""
    ordered = sorted(nodefirewalls, key=_key)
    nodes = tuple(
        NodeReport(
            name=_key(nfw),
            backend=str((nfw.get("status") or {}).get("backend") or ""),
            last_sync=str((nfw.get("status") or {}).get("lastSync") or ""),
            last_error=str((nfw.get("status") or {}).get("lastError") or ""),
            truncated=bool((nfw.get("status") or {}).get("programmedPoliciesTruncated")),
        )
        for nfw in ordered
    )
    problems = _problems(ordered)
    reports = []
    for obj in objects:
        kind = str(obj.get("kind"))
        if kind not in FIELDS:
            continue
        name = _key(obj)
        generation = (obj.get("metadata") or {}).get("generation")
        generation = generation if isinstance(generation, int) else 0
        have = [
            _key(nfw)
            for nfw in ordered
            if ((nfw.get("status") or {}).get(FIELDS[kind]) or {}).get(name) == generation
        ]
        reports.append(
            ObjectReport(
                kind=kind,
                name=name,
                generation=generation,
                programmed=tuple(have),
                missing=tuple(n.name for n in nodes if n.name not in have),
                problems=tuple(sorted(problems.get((kind, name), ()))),
            )
        )
    notes = [f"node {n.name} lists too many NetworkPolicies to tell" for n in nodes if n.truncated]
    if not nodes:
        notes.append("no NodeFirewall: no podwall agent has reported yet")
    reports.sort(key=lambda r: (r.kind != "FirewallRule", r.name))
    return Report(nodes, tuple(reports), tuple(notes))


def to_json(report: Report) -> Json:
    total = len(report.nodes)
    return {
        "nodes": [
            {
                "name": n.name,
                "backend": n.backend,
                "lastSync": n.last_sync,
                "lastError": n.last_error,
            }
            for n in report.nodes
        ],
        "objects": [
            {
                "kind": o.kind,
                "name": o.name,
                "generation": o.generation,
                "programmed": f"{len(o.programmed)}/{total}",
                "missing": list(o.missing),
                "problems": list(o.problems),
            }
            for o in report.objects
        ],
        "notes": list(report.notes),
        "complete": report.complete,
    }


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def to_text(report: Report) -> str:
    """Two tables: the nodes, then every object with N/M and its problems."""
    total = len(report.nodes)
    rows = [["NODE", "BACKEND", "LAST SYNC", "ERROR"]]
    rows += [
        [n.name, n.backend or "-", n.last_sync or "-", n.last_error[:60] or "-"]
        for n in report.nodes
    ]
    lines = _columns(rows) if report.nodes else []
    objects = [["KIND", "NAME", "GENERATION", "PROGRAMMED", "NOT ON", "PROBLEMS"]]
    for o in report.objects:
        objects.append(
            [
                o.kind,
                o.name,
                str(o.generation),
                f"{len(o.programmed)}/{total}",
                ",".join(o.missing) or "-",
                "; ".join(o.problems) or "-",
            ]
        )
    lines += [""] + (
        _columns(objects) if report.objects else ["no NetworkPolicies or FirewallRules"]
    )
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines).lstrip("\n") + "\n"
