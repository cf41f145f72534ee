"""``podwall lab logs``: the lab's traffic log, merged from every node.

Each lab agent writes its traffic log (one JSON object per line, see
``firewall_operator.agent.trafficlog``) to ``DIR/nodes/<node>/traffic.jsonl``
(``path``).  ``lines`` yields what is there, oldest first across nodes (by
each line's ``time``), and with ``follow`` keeps polling for new lines until
interrupted.  Reads only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from firewall_lab.lab import state
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import Layout

FILE = "traffic.jsonl"
POLL = 0.3


def path(layout: Layout, node: str) -> str:
    """Where the agent of ``node`` writes its traffic log."""
    return layout.node_dir(layout.node(node), FILE)


def _time(line: str) -> str:
    try:
        return str(json.loads(line).get("time", ""))
    except (ValueError, AttributeError):
        return ""


def _files(directory: str, node: str | None) -> list[str]:
    layout = state.load(os.path.abspath(directory)).layout(os.path.abspath(directory))
    names = [n.name for n in layout.node_list()]
    if node is not None and node not in names:
        raise LabError(f"--node {node}: the lab has {', '.join(names)}")
    return [path(layout, name) for name in names if node in (None, name)]


def _read_new(name: str, offsets: dict[str, int]) -> list[str]:
    """Complete lines appended to ``name`` since the last call."""
    try:
        with open(name, "rb") as handle:
            handle.seek(offsets.get(name, 0))
            data = handle.read()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    offsets[name] = offsets.get(name, 0) + end
    return [line for line in data[:end].decode(errors="replace").splitlines() if line.strip()]


def lines(directory: str, *, node: str | None = None, follow: bool = False) -> Iterator[str]:
    """Every line of the lab's traffic logs (see module doc)."""
    files = _files(directory, node)
    offsets: dict[str, int] = {}
    while True:
        found = [line for name in files for line in _read_new(name, offsets)]
        yield from sorted(found, key=_time)
        if not follow:
            return
        time.sleep(POLL)
