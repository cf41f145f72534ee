"""Reachability matrices as readable, optionally coloured, tables.  Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GREEN, RED, YELLOW, BOLD, DIM, RESET = (
    "\033[32m",
    "\033[31m",
    "\033[33m",
    "\033[1m",
    "\033[2m",
    "\033[0m",
)


def paint(text: str, code: str, colour: bool) -> str:
    return f"{code}{text}{RESET}" if colour else text


#: probe outcome → cell text (``probing``: open, refused, unreachable, dropped)
CELLS = {"open": "ok", "refused": "rf", "unreachable": "un", "dropped": "--"}
LEGEND = "ok open, -- dropped (no answer), rf refused (reached, nothing listening), un unreachable"


def _cell(matrix: Mapping[str, Any], src: str, dst: str) -> str:
    outcome = (matrix.get("outcomes") or {}).get(src, {}).get(dst)
    if outcome in CELLS:
        return CELLS[outcome]
    return "ok" if matrix["reachable"][src][dst] else "--"


def matrix_table(
    matrix: Mapping[str, Any],
    *,
    colour: bool = False,
    before: Mapping[str, Any] | None = None,
) -> str:
    """Rows send, columns receive (numbered like the rows); ``ok``/``--`` (and
    ``rf``/``un`` when the probe tells, see ``LEGEND``); with ``before``, a
    changed cell is marked ``*`` (yellow-bold in colour)."""
    pods: list[str] = list(matrix["pods"])
    reach = matrix["reachable"]
    old = (before or {}).get("reachable") or {}
    width = max([len(pod) for pod in pods] + [9])
    corner = "from \\ to"
    numbers = " ".join(f"{number:>4}" for number in range(1, len(pods) + 1))
    family = f" {matrix['family']}" if matrix.get("family") else ""
    lines = [
        f"port {matrix['port']}/{matrix['protocol']}{family}: row = from, column = to (by number)",
        f"{'':>3} {corner:<{width}} {numbers}",
    ]
    for number, src in enumerate(pods, 1):
        cells = []
        for dst in pods:
            ok = bool(reach[src][dst])
            changed = bool(old) and old.get(src, {}).get(dst, ok) != ok
            text = f"{_cell(matrix, src, dst) + ('*' if changed else ' '):>4}"
            code = (BOLD + YELLOW) if changed else (GREEN if ok else RED)
            cells.append(paint(text, code, colour))
        lines.append(f"{number:>3} {src:<{width}} " + " ".join(cells))
    if any(_cell(matrix, s, d) in ("rf", "un") for s in pods for d in pods):
        lines.append(LEGEND)
    return "\n".join(lines) + "\n"


def changed_pairs(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Pairs whose reachability differs (over the pods both list)."""
    pods = [pod for pod in after["pods"] if pod in before["pods"]]
    return [
        (src, dst)
        for src in pods
        for dst in pods
        if before["reachable"][src][dst] != after["reachable"][src][dst]
    ]
