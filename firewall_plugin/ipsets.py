"""Read and atomically replace podwall's ipsets with ``ipset restore``.

``ipset restore`` fills 10,000 entries in ~55 ms where pyroute2's IPSet
netlink API takes ~2 s (FACTS.md), so sets are written as text in one process.
Sets are not per iptables family: one call handles IPv4 and IPv6 sets.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from firewall_plugin import model, names, render
from firewall_plugin.errors import BackendError


def _run(argv: list[str], text: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=text, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackendError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise BackendError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def list_names() -> list[str]:
    """Names of the podwall ipsets in this network namespace."""
    return sorted(n for n in _run(["ipset", "list", "-n"]).split() if names.is_podwall_name(n))


def read_entries(name: str) -> list[str]:
    """The members of set ``name`` as ``ipset save`` spells them."""
    entries = []
    for line in _run(["ipset", "save", name]).splitlines():
        if line.startswith("add "):
            entries.append(line.split(" ", 2)[2])
    return sorted(entries)


def apply(*, replace: Sequence[model.IPSet] = (), destroy: Sequence[str] = ()) -> None:
    """Create or atomically replace ``replace``; destroy ``destroy`` (ignoring
    names that do not exist).  Rules must no longer reference destroyed sets."""
    existing = set(list_names()) if destroy else set()
    text = render.render_ipset_restore(
        replace=replace, destroy=[name for name in destroy if name in existing]
    )
    if text:
        _run(["ipset", "restore"], text)
