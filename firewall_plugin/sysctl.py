"""Bridge netfilter: make bridged pod traffic pass through iptables.

Chained after ``bridge``, pod-to-pod packets are switched by the bridge and
reach iptables only when ``net.bridge.bridge-nf-call-iptables`` (and
``...-ip6tables`` for IPv6) is 1.  ``/proc/sys/net`` belongs to the network
namespace of the caller, so the plugin reads and writes the node's own values.

Reads ``/sys/class/net`` and ``/proc/sys/net/bridge``; writes only the two
``bridge-nf-call-*`` sysctls, and only when asked to fix them.
"""

from __future__ import annotations

import os

from firewall_plugin import model, protocol

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

SYS_NET = "/sys/class/net"
BRIDGE_SYSCTL_DIR = "/proc/sys/net/bridge"
SYSCTL_OF: dict[model.Family, str] = {
    "ipv4": "bridge-nf-call-iptables",
    "ipv6": "bridge-nf-call-ip6tables",
}


def _sys_path(ifname: str, leaf: str) -> str | None:
    if not ifname or "/" in ifname or ifname in (".", ".."):
        return None
    return os.path.join(SYS_NET, ifname, leaf)


def is_bridge(ifname: str) -> bool:
    """True when ``ifname`` is a bridge in this network namespace."""
    path = _sys_path(ifname, "bridge")
    return path is not None and os.path.isdir(path)


def is_bridge_port(ifname: str) -> bool:
    """True when ``ifname`` is enslaved to a bridge in this network namespace."""
    path = _sys_path(ifname, "brport")
    return path is not None and os.path.isdir(path)


def bridge_of(ifname: str) -> str:
    """The bridge ``ifname`` is a port of, '' when it is none's."""
    path = _sys_path(ifname, "brport/bridge")
    if path is None:
        return ""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return ""


def is_bridged(host_interfaces: Iterable[str]) -> bool:
    """True when any host-side interface of the attachment is or joins a bridge."""
    return any(is_bridge(name) or is_bridge_port(name) for name in host_interfaces)


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def ensure_bridge_netfilter(families: Iterable[model.Family], *, fix: bool) -> list[str]:
    """Make sure bridged traffic of ``families`` is seen by iptables.

    Returns the sysctls it set to 1.  Raises BridgeNetfilterError when one is 0
    and ``fix`` is false, or when br_netfilter is not available at all.
    """
    changed: list[str] = []
    for family in dict.fromkeys(families):
        name = SYSCTL_OF[family]
        path = os.path.join(BRIDGE_SYSCTL_DIR, name)
        value = _read(path)
        if value is None:
            raise protocol.BridgeNetfilterError(
                f"net.bridge.{name} does not exist (br_netfilter not loaded): bridged pod "
                "traffic would bypass podwall; load br_netfilter"
            )
        if value == "1":
            continue
        if not fix:
            raise protocol.BridgeNetfilterError(
                f"net.bridge.{name} is {value}: bridged pod traffic bypasses podwall; "
                "set it to 1 or enable ensureBridgeNetfilter"
            )
        try:
            with open(path, "w") as handle:
                handle.write("1\n")
        except OSError as exc:
            raise protocol.BridgeNetfilterError(f"cannot set net.bridge.{name}=1: {exc}") from exc
        changed.append(f"net.bridge.{name}")
    return changed
