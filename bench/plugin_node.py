"""A node for the plugin benchmark: a bridge and real pod namespaces on it.

``BenchNode.create(count, dual=...)`` makes a node namespace with bridge
``cni0`` (gateways ``10.77.0.1/16`` and ``fd00:77::1/64``) and ``count`` pod
namespaces, each joined to the bridge by a veth pair (host end ``vbp<n>``)
with its addresses on ``eth0``, as the bridge plugin leaves a pod before the
chained plugins run.  ``Pod.prev_result()`` is that pod's prevResult.
``delete()`` removes every namespace.  Benchmark support only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firewall_lab import netns

NO_DAD = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}


@dataclass(frozen=True)
class Pod:
    index: int
    netns: str
    host: str  # the veth end on the node
    dual: bool

    @property
    def v4(self) -> str:
        return f"10.77.{self.index // 250}.{self.index % 250 + 5}"

    @property
    def v6(self) -> str:
        return f"fd00:77::{self.index + 5:x}"

    def prev_result(self) -> dict[str, Any]:
        ips = [{"address": f"{self.v4}/16", "gateway": "10.77.0.1", "interface": 2}]
        if self.dual:
            ips.append({"address": f"{self.v6}/64", "gateway": "fd00:77::1", "interface": 2})
        return {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0"},
                {"name": self.host},
                {"name": "eth0", "sandbox": netns.path(self.netns)},
            ],
            "ips": ips,
        }


@dataclass
class BenchNode:
    name: str
    pods: list[Pod] = field(default_factory=list)

    @classmethod
    def create(cls, count: int, *, dual: bool) -> BenchNode:
        sysctls = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1", **NO_DAD}
        node = cls(netns.create(netns.unique_name("pwbench"), sysctls=sysctls))
        try:
            for argv in (
                ["ip", "link", "add", "cni0", "type", "bridge"],
                ["ip", "addr", "add", "10.77.0.1/16", "dev", "cni0"],
                ["ip", "addr", "add", "fd00:77::1/64", "dev", "cni0"],
                ["ip", "link", "set", "cni0", "up"],
            ):
                netns.run(node.name, argv)
            for index in range(count):
                node.pods.append(node._pod(index, dual))
        except Exception:
            node.delete()
            raise
        return node

    def _pod(self, index: int, dual: bool) -> Pod:
        pod = Pod(index, netns.create(netns.unique_name("pwbenchp"), sysctls=NO_DAD),
                  f"vbp{index}", dual)  # fmt: skip
        netns.run(self.name, ["ip", "link", "add", pod.host, "type", "veth", "peer", "eth0",
                              "netns", pod.netns])  # fmt: skip
        netns.run(self.name, ["ip", "link", "set", pod.host, "master", "cni0", "up"])
        netns.run(pod.netns, ["ip", "addr", "add", f"{pod.v4}/16", "dev", "eth0"])
        if dual:
            netns.run(pod.netns, ["ip", "addr", "add", f"{pod.v6}/64", "dev", "eth0"])
        netns.run(pod.netns, ["ip", "link", "set", "eth0", "up"])
        return pod

    def delete(self) -> None:
        for pod in self.pods:
            netns.delete(pod.netns)
        netns.delete(self.name)
