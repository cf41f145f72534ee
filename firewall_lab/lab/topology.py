"""Build the lab's network: the underlay, the node namespaces, the CNI install.

``make_underlay`` creates the lab namespace holding the underlay bridge and
the API address; ``make_node`` creates a node namespace (forwarding on,
duplicate address detection off), joins it to the underlay with a veth whose
other end is enslaved to the bridge inside the lab namespace, and prepares
its folders; ``route_nodes`` gives every node a route to every other node's
pod CIDR (host-gw style); ``install_cni`` writes the primary conflist and
runs ``podwall cni install`` into the node's own bin and conf folders.

Every link and sysctl is made inside the lab's namespaces (``ip -n``,
``ip netns exec``), never in the machine's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from firewall_lab import netns
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.layout import API_IP, BRIDGE, NODE_LINK, UNDERLAY6, Layout, Node
from firewall_lab.lab.state import Recorder

REFERENCE_DIR = os.environ.get("PODWALL_CNI_PATH", "/usr/lib/cni")
CNI_VERSION = "1.0.0"
NO_DAD = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    **NO_DAD,
}
NODE_FOLDERS = ("bin", "net.d", "state", "run", "cache", "ipam")


def _batch(name: str, commands: list[str]) -> None:
    """Run ``ip`` commands inside namespace ``name`` in one process."""
    netns.run(name, ["ip", "-batch", "-"], input="\n".join(commands) + "\n")


def make_underlay(layout: Layout, recorder: Recorder) -> None:
    """The lab namespace with the underlay bridge and the API address."""
    netns.create(recorder.netns(layout.lab_netns), sysctls=NO_DAD)
    _batch(
        layout.lab_netns,
        [
            f"link add {BRIDGE} type bridge",
            f"link set {BRIDGE} up",
            f"addr add {API_IP}/24 dev {BRIDGE}",
            f"addr add {UNDERLAY6}fe/64 dev {BRIDGE} nodad",
        ],
    )


def make_node(layout: Layout, node: Node, recorder: Recorder) -> None:
    """A node namespace on the underlay, with its folders."""
    netns.create(recorder.netns(node.netns), sysctls=NODE_SYSCTLS)
    _batch(
        layout.lab_netns,
        [
            f"link add {node.lab_link} type veth peer name {NODE_LINK} netns {node.netns}",
            f"link set {node.lab_link} master {BRIDGE} up",
        ],
    )
    _batch(
        node.netns,
        [
            f"addr add {node.ip4}/24 dev {NODE_LINK}",
            f"addr add {node.ip6}/64 dev {NODE_LINK} nodad",
            f"link set {NODE_LINK} up",
        ],
    )
    for folder in NODE_FOLDERS:
        os.makedirs(layout.node_dir(node, folder), exist_ok=True)


def route_nodes(layout: Layout) -> None:
    """Routes from every node to every other node's pod CIDRs."""
    nodes = layout.node_list()
    for node in nodes:
        commands = []
        for other in nodes:
            if other.index == node.index:
                continue
            commands.append(f"route add {other.pod_cidr4} via {other.ip4}")
            if layout.ipv6:
                commands.append(f"route add {other.pod_cidr6} via {other.ip6}")
        if commands:
            _batch(node.netns, commands)


def primary_conflist(layout: Layout, node: Node) -> dict[str, Any]:
    """The node's primary network: ``bridge`` or ``ptp`` with host-local IPAM."""
    subnets = [node.pod_cidr4, node.pod_cidr6] if layout.ipv6 else [node.pod_cidr4]
    ipam: dict[str, Any] = {
        "type": "host-local",
        "dataDir": layout.node_dir(node, "ipam"),
        "ranges": [[{"subnet": subnet}] for subnet in subnets],
    }
    if layout.cni == "bridge":
        plugin: dict[str, Any] = {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "isDefaultGateway": True,
            "ipMasq": False,
            "ipam": ipam,
        }
    else:
        routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if layout.ipv6 else [])
        plugin = {"type": "ptp", "ipMasq": False, "ipam": {**ipam, "routes": routes}}
    return {"cniVersion": CNI_VERSION, "name": "podwall-lab", "plugins": [plugin]}


def install_cni(layout: Layout, node: Node, *, pod_default: str) -> None:
    """Reference plugins into the node's bin folder, the primary conflist into
    its conf folder, then ``podwall cni install`` chains podwall in."""
    bin_dir, conf_dir = layout.node_dir(node, "bin"), layout.node_dir(node, "net.d")
    for plugin in sorted(os.listdir(REFERENCE_DIR)):
        link = os.path.join(bin_dir, plugin)
        if not os.path.lexists(link):
            os.symlink(os.path.join(REFERENCE_DIR, plugin), link)
    with open(os.path.join(conf_dir, f"10-{layout.cni}.conflist"), "w") as handle:
        json.dump(primary_conflist(layout, node), handle, indent=1)
    argv = [sys.executable, "-m", "podwall", "cni", "install"]
    argv += ["--bin-dir", bin_dir, "--conf-dir", conf_dir]
    argv += ["--state-dir", layout.node_dir(node, "state")]
    argv += ["--run-dir", layout.node_dir(node, "run")]
    argv += ["--backend", layout.backend, "--pod-default", pod_default]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=_root())
    if done.returncode != 0:
        raise LabError(f"podwall cni install on {node.name} failed: {done.stderr.strip()}")


def conflist_path(layout: Layout, node: Node) -> str:
    """The node's primary config file (the first by name, as kubelet picks it)."""
    conf_dir = layout.node_dir(node, "net.d")
    names = sorted(n for n in os.listdir(conf_dir) if n.endswith((".conf", ".conflist", ".json")))
    if not names:
        raise LabError(f"no CNI config in {conf_dir}")
    return os.path.join(conf_dir, names[0])


def _root() -> str:
    import firewall_lab

    return os.path.dirname(os.path.dirname(os.path.abspath(firewall_lab.__file__)))
