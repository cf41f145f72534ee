"""Does the host have the tools the chosen backend runs?

The plugin runs on the host.  The ``nftables`` backend talks netlink itself
and needs nothing but the kernel; the iptables backends exec the host's
``iptables-{nft,legacy}-restore`` (and ``ip6tables-…``) and ``ipset``; the
``iptc`` backend needs python-iptables and the host's libiptc, which the
bundle does not carry.  ``warnings(root, backend, bundled=...)`` looks for
the tools under ``root`` (the host's file system as this process sees it) and
says what is missing; ``refusal`` names a combination that can never work.
Looking can miss tools in folders that are not mounted, so a missing tool is
a warning, not a refusal.
"""

from __future__ import annotations

import os

from firewall_install.errors import HostError

FOLDERS = ("usr/sbin", "usr/bin", "sbin", "bin", "usr/local/sbin", "usr/local/bin")
TOOLS = {
    "iptables-nft": ("iptables-nft-restore", "ip6tables-nft-restore", "ipset"),
    "iptables-legacy": ("iptables-legacy-restore", "ip6tables-legacy-restore", "ipset"),
}


def find(root: str, tool: str) -> str | None:
    for folder in FOLDERS:
        path = os.path.join(root, folder, tool)
        if os.path.lexists(path):  # a symlink into /etc/alternatives counts
            return path
    return None


def refusal(backend: str, *, bundled: bool) -> None:
    """Raise ``HostError`` for a backend the bundle cannot run at all."""
    if bundled and backend == "iptc":
        raise HostError(
            "the host bundle does not carry the iptc backend (it needs python-iptables and "
            "the host's libiptc): use --backend iptables-nft, iptables-legacy or auto"
        )


def warnings(root: str, backend: str) -> list[str]:
    """What the host lacks for ``backend`` (empty when nothing is missing)."""
    variants = [backend] if backend in TOOLS else list(TOOLS) if backend == "auto" else []
    missing = {v: [t for t in TOOLS[v] if find(root, t) is None] for v in variants}
    if not any(missing.values()):
        return []
    where = ", ".join(os.path.join(root, folder) for folder in FOLDERS[:2])
    if backend == "auto":
        if all(missing.values()):
            return [
                f"no iptables-restore or ipset found on the host (looked in {where}, ...): "
                "backend auto can then only use nftables; install iptables and ipset on the "
                "node if the kernel has no nftables"
            ]
        return []
    tools = ", ".join(missing[backend])
    return [
        f"backend {backend} runs the host's {tools}, not found on the host (looked in "
        f"{where}, ...): every ADD will fail until they are installed on the node "
        "(Debian/Ubuntu: apt-get install iptables ipset), or use another backend"
    ]
