"""Bridge netfilter: make bridged pod traffic pass through iptables.

Chained after ``bridge``, pod-to-pod packets are switched by the bridge and
reach iptables only when ``net.bridge.bridge-nf-call-iptables`` (and
``...-ip6tables`` for IPv6) is 1; frames with a VLAN tag only when
``net.bridge.bridge-nf-filter-vlan-tagged`` is 1 too (a pod can send a
"priority tag", VLAN ID 0, which the receiving pod takes as untagged).
``/proc/sys/net`` belongs to the network namespace of the caller, so the
plugin reads and writes the node's own values.

Reads ``/proc/sys/net/bridge``; writes only those three sysctls, and only
when asked to fix them.
"""

from __future__ import annotations

import os

from firewall_plugin import model, protocol

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

BRIDGE_SYSCTL_DIR = "/proc/sys/net/bridge"
SYSCTL_OF: dict[model.Family, str] = {
    "ipv4": "bridge-nf-call-iptables",
    "ipv6": "bridge-nf-call-ip6tables",
}
VLAN_TAGGED = "bridge-nf-filter-vlan-tagged"


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def ensure_bridge_netfilter(families: Iterable[model.Family], *, fix: bool) -> list[str]:
    """Make sure bridged traffic of ``families`` (tagged or not) is seen by iptables.

    Returns the sysctls it set to 1.  Raises BridgeNetfilterError when one is 0
    and ``fix`` is false, or when br_netfilter is not available at all.
    """
    changed: list[str] = []
    wanted = [SYSCTL_OF[family] for family in dict.fromkeys(families)]
    for name in [*wanted, VLAN_TAGGED] if wanted else []:
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
            what = (
                "VLAN-tagged frames bypass"
                if name == VLAN_TAGGED
                else "bridged pod traffic bypasses"
            )
            raise protocol.BridgeNetfilterError(
                f"net.bridge.{name} is {value}: {what} podwall; "
                "set it to 1 or enable ensureBridgeNetfilter"
            )
        try:
            with open(path, "w") as handle:
                handle.write("1\n")
        except OSError as exc:
            raise protocol.BridgeNetfilterError(f"cannot set net.bridge.{name}=1: {exc}") from exc
        changed.append(f"net.bridge.{name}")
    return changed
