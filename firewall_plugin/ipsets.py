"""Read and atomically replace podwall's ipsets with ``ipset restore``.

``ipset restore`` fills 10,000 entries in ~55 ms where pyroute2's IPSet
netlink API takes ~2 s (docs/facts.md), so sets are written as text in one process.
Sets are not per iptables family: one call handles IPv4 and IPv6 sets.

``apply`` fills every replacement under a temporary ``-T`` name and swaps it
in, so a ``-m set`` rule never sees a set missing or half filled; when the
restore fails, the temporary sets are destroyed again.  Touches only sets
whose name starts with ``PODWALL``; never touches iptables rules.
"""

from __future__ import annotations

import contextlib
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


def parse_headers(text: str) -> dict[str, render.SetHeader]:
    """Set name → header from ``ipset list -t`` output."""
    headers: dict[str, render.SetHeader] = {}
    name = kind = family = ""
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "Name":
            name, kind, family = value.strip(), "", ""
        elif key == "Type":
            kind = value.strip()
        elif key == "Header":
            words = value.split()
            family = words[words.index("family") + 1] if "family" in words else ""
        elif key == "References" and name:
            headers[name] = render.SetHeader(kind, family, int(value))
    return headers


def read_headers() -> dict[str, render.SetHeader]:
    """Headers of the podwall ipsets in this network namespace."""
    headers = parse_headers(_run(["ipset", "list", "-t"]))
    return {name: header for name, header in headers.items() if names.is_podwall_name(name)}


def list_names() -> list[str]:
    """Names of the podwall ipsets in this network namespace."""
    return sorted(n for n in _run(["ipset", "list", "-n"]).split() if names.is_podwall_name(n))


def read_entries(name: str) -> list[str]:
    """The members of set ``name`` as ``ipset save`` spells them, sorted."""
    entries = []
    for line in _run(["ipset", "save", name]).splitlines():
        if line.startswith("add "):
            entries.append(line.split(" ", 2)[2])
    return sorted(entries)


def apply(*, replace: Sequence[model.IPSet] = (), destroy: Sequence[str] = ()) -> None:
    """Create or atomically replace ``replace``; destroy ``destroy`` (ignoring
    names that do not exist).  Rules must no longer reference destroyed sets.

    A set that exists with another type or family is destroyed and created
    anew, which the kernel refuses while a rule references it (BackendError:
    give the new set a new name).  When the restore fails, no ``-T`` set is
    left behind; raises BackendError.
    """
    replace = list(replace)
    wanted = {ipset.name for ipset in replace}
    if len(wanted) != len(replace):
        raise BackendError("ipsets.apply: a set name appears twice in replace")
    existing = read_headers()
    text = render.render_ipset_restore(
        replace=replace,
        destroy=[
            name for name in dict.fromkeys(destroy) if name in existing and name not in wanted
        ],
        existing=existing,
    )
    if not text:
        return
    try:
        _run(["ipset", "restore"], text)
    except BackendError:
        _discard_temps(replace)
        raise


def _discard_temps(replace: Sequence[model.IPSet]) -> None:
    """Destroy the temporary sets a failed restore may have left."""
    text = "".join(f"destroy {render.temp_name(ipset.name)} -exist\n" for ipset in replace)
    with contextlib.suppress(BackendError):  # the first error matters more
        _run(["ipset", "restore"], text)
