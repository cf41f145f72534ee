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


def matrix_table(
    matrix: Mapping[str, Any],
    *,
    colour: bool = False,
    before: Mapping[str, Any] | None = None,
) -> str:
    """Rows send, columns receive (numbered like the rows); ``ok``/``--``;
    with ``before``, a changed cell is marked ``*`` (yellow-bold in colour)."""
    pods: list[str] = list(matrix["pods"])
    reach = matrix["reachable"]
    old = (before or {}).get("reachable") or {}
    width = max([len(pod) for pod in pods] + [9])
    corner = "from \\ to"
    numbers = " ".join(f"{number:>4}" for number in range(1, len(pods) + 1))
    lines = [
        f"port {matrix['port']}/{matrix['protocol']}: row = from, column = to (by number)",
        f"{'':>3} {corner:<{width}} {numbers}",
    ]
    for number, src in enumerate(pods, 1):
        cells = []
        for dst in pods:
            ok = bool(reach[src][dst])
            changed = bool(old) and old.get(src, {}).get(dst, ok) != ok
            text = f"{('ok' if ok else '--') + ('*' if changed else ' '):>4}"
            code = (BOLD + YELLOW) if changed else (GREEN if ok else RED)
            cells.append(paint(text, code, colour))
        lines.append(f"{number:>3} {src:<{width}} " + " ".join(cells))
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
