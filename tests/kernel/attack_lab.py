"""A two-node attack lab: forged packets against podwall, per backend.

``AttackLab(root, backend).start()`` builds, in throwaway namespaces:

* an underlay (a bridge in its own namespace) joining ``node-1``
  (192.168.77.1, fd00:77::1), ``node-2`` (.2, ::2) and an ``outside`` host
  (.100, ::100), with routes between the nodes' pod ranges;
* on each node two networks through the real CNI chain, both chained with
  ``podwall`` (one state folder per node): ``bridge`` (cni0, 10.244.N.0/25,
  fd00:244:N:1::/64) and ``ptp`` (10.244.N.128/25, fd00:244:N:2::/64);
* per network, on node-1 an attacker ``m``, a victim ``v``, a trusted pod
  ``t``, an open pod ``o`` (no policy) and a walled pod ``e`` (``egress:
  []``); on node-2 ``v`` and ``t``.  Pods are keyed ``<network>-<role><node>``
  (``bridge-m1``) and run an ``attack_station`` (UDP 9999 and 4444, raw ICMP).

Every node and pod has ``rp_filter`` off: what is stopped, podwall stops.
``program()`` compiles the lab's policies (``POLICIES``) with
``firewall_operator.compiler`` for each node's endpoint records and applies
them with that node's applier, as the agent does (``attack_policies``).  ``stop()`` deletes it all.

Test support only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from firewall_lab import netns, probe
from firewall_lab.cni_conf import Attachment
from firewall_operator import applier as applier_mod
from firewall_operator import cluster, compiler
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import backends, endpoints, model
from tests.kernel import attack_policies, cni_helpers
from tests.kernel.inside import entered

BACKENDS = ("nftables", "iptables-nft", "iptables-legacy", "iptc")
NETWORKS = ("bridge", "ptp")
V4ONLY = "v4only"  #: on node-1 only: a bridge (cni4) whose pods have no IPv6 address
PORT, FLOW_PORT, NODE_PORT, TCP_PORT = 9999, 4444, 10250, 80
OUTSIDE, NODE = "outside", "node-1"
UNDERLAY = {"ipv4": "192.168.77.{}", "ipv6": "fd00:77::{}"}
OUTSIDE_INDEX = 100
EXTERNAL = {"ipv4": "198.51.100.7", "ipv6": "2001:db8::7"}
ROLES = {1: ("m", "v", "t", "o", "e"), 2: ("v", "t")}
QUIET = {
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}
ROUTER = {**QUIET, "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subnets(node: int, network: str) -> tuple[str, ...]:
    if network == V4ONLY:
        return (f"10.244.{node}1.0/24",)
    if network == "bridge":
        return f"10.244.{node}.0/25", f"fd00:244:{node}:1::/64"
    return f"10.244.{node}.128/25", f"fd00:244:{node}:2::/64"


def unused(network: str, family: model.Family) -> str:
    """A pod-range address of node-1 that no pod holds."""
    last = 99 if network == "bridge" else 199
    return (
        f"10.244.1.{last}" if family == "ipv4" else f"fd00:244:1:{NETWORKS.index(network) + 1}::99"
    )


def underlay(index: int, family: model.Family) -> str:
    return UNDERLAY[family].format(index)


class Station:
    """A running ``attack_station`` in one namespace, driven over its pipes."""

    def __init__(self, name: str) -> None:
        code = (
            f"import sys; sys.path.insert(0, {ROOT!r}); "
            "from tests.kernel.attack_station import main; sys.exit(main(sys.argv[1:]))"
        )
        argv = ["ip", "netns", "exec", name, sys.executable, "-E", "-s", "-S", "-c", code]
        self.name = name
        self.process = subprocess.Popen(
            [*argv, "--udp", f"{PORT},{FLOW_PORT}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"station in {name} did not start: {line!r}")

    def call(self, op: str, **args: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"station {self.name}: {op}: {answer['error']}")
        return answer["ok"]

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class LabPod:
    key: str
    network: str
    role: str
    node: int
    netns: str
    attachment: Attachment
    ips: tuple[str, ...] = ()
    station: Station | None = None

    def ip(self, family: model.Family) -> str:
        return next(ip for ip in self.ips if model.family_of(ip) == family)

    def gateway(self, family: model.Family) -> str:
        flag = "-6" if family == "ipv6" else "-4"
        routes = json.loads(
            netns.run(self.netns, ["ip", "-j", flag, "route", "show", "default"]).stdout
        )
        return str(routes[0]["gateway"])

    def link_local(self) -> str:
        shown = netns.run(self.netns, ["ip", "-j", "-6", "addr", "show", "dev", "eth0"])
        found = json.loads(shown.stdout)[0]["addr_info"]
        return next(str(a["local"]) for a in found if a.get("scope") == "link")

    def call(self, op: str, **args: Any) -> Any:
        assert self.station is not None
        return self.station.call(op, **args)


@dataclass
class AttackLab:
    root: str
    backend: str
    namespaces: list[str] = field(default_factory=list)
    nodes: dict[int, cni_helpers.Node] = field(default_factory=dict)
    networks: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, LabPod] = field(default_factory=dict)
    outside: str = ""
    outside_station: Station | None = None
    node_station: Station | None = None  #: in node-1
    appliers: dict[int, applier_mod.NodeApplier] = field(default_factory=dict)
    servers: list[probe.Server] = field(default_factory=list)
    docs: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # --- building -----------------------------------------------------------------

    def _netns(self, prefix: str, sysctls: Mapping[str, str]) -> str:
        name = netns.create(netns.unique_name(prefix), sysctls=sysctls)
        self.namespaces.append(name)
        return name

    def start(self) -> AttackLab:
        switch = self._netns("pwasw", QUIET)
        netns.run(switch, ["ip", "link", "add", "ul0", "type", "bridge"])
        netns.run(switch, ["ip", "link", "set", "ul0", "up"])
        for index in (1, 2):
            name = self._netns(f"pwan{index}", ROUTER)
            self.nodes[index] = cni_helpers.Node(name, os.path.join(self.root, f"node-{index}"))
            self._wire(switch, name, index)
        self.outside = self._netns("pwaout", QUIET)
        self._wire(switch, self.outside, OUTSIDE_INDEX)
        self._routes()
        for index, node in self.nodes.items():
            for network in NETWORKS:
                self.networks[(index, network)] = self._conflist(node, index, network)
        self.networks[(1, V4ONLY)] = self._conflist(self.nodes[1], 1, V4ONLY)
        jobs = [(i, n, r) for i in (1, 2) for n in NETWORKS for r in ROLES[i]]
        jobs += [(1, V4ONLY, role) for role in ("m", "o", "e")]
        self.add_pod(*jobs[0])  # the first ADD makes the bridge: alone
        cni_helpers.parallel(lambda job: self.add_pod(*job), jobs[1:], workers=4)
        self.outside_station = Station(self.outside)
        self.node_station = Station(self.nodes[1].name)
        self.servers.append(probe.serve(self.nodes[1].name, tcp=(NODE_PORT,)))
        for network in (*NETWORKS, V4ONLY):
            self.servers.append(probe.serve(self.pods[f"{network}-o1"].netns, tcp=(TCP_PORT,)))
        for index, node in self.nodes.items():
            with entered(node.name):
                self.appliers[index] = make_applier(self.backend, node)
        return self

    def _wire(self, switch: str, host: str, index: int) -> None:
        port = f"ul{index}"
        netns.run(switch, ["ip", "link", "add", port, "type", "veth", "peer", "name", "eth1",
                           "netns", host])  # fmt: skip
        netns.run(switch, ["ip", "link", "set", port, "master", "ul0", "up"])
        netns.run(host, ["ip", "addr", "add", f"{underlay(index, 'ipv4')}/24", "dev", "eth1"])
        netns.run(host, ["ip", "addr", "add", f"{underlay(index, 'ipv6')}/64", "dev", "eth1"])
        netns.run(host, ["ip", "link", "set", "eth1", "up"])

    def _routes(self) -> None:
        for index in (1, 2):
            for network in NETWORKS:
                for family, cidr in zip(model.FAMILIES, subnets(index, network), strict=True):
                    via = underlay(index, family)
                    for host in (self.nodes[3 - index].name, self.outside):
                        netns.run(host, ["ip", "route", "add", cidr, "via", via])

    def _conflist(self, node: cni_helpers.Node, index: int, network: str) -> dict[str, Any]:
        ipam = cni_helpers.host_local(node.dir(f"ipam-{network}"), subnets(index, network))
        if network in ("bridge", V4ONLY):
            name = "cni0" if network == "bridge" else "cni4"
            primary = {"type": "bridge", "bridge": name, "isGateway": True,
                       "isDefaultGateway": True, "ipMasq": False, "ipam": ipam}  # fmt: skip
        else:
            ipam["routes"] = [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
            primary = {"type": "ptp", "ipMasq": False, "ipam": ipam}
        return cni_helpers.conflist(
            [primary, node.podwall(backend=self.backend)], name=f"podnet-{network}"
        )

    def add_pod(
        self, node: int, network: str, role: str, *, name: str = "", ip: str = ""
    ) -> LabPod:
        """ADD a pod through the node's chain (``ip``: the IPv4 address to ask
        host-local for)."""
        key = name or f"{network}-{role}{node}"
        pod_ns = self._netns("pwap", QUIET)
        container_id = f"c{next(self._ids):03d}{pod_ns.replace('-', '')}"
        args = {
            "K8S_POD_NAMESPACE": attack_policies.NAMESPACE,
            "K8S_POD_NAME": key,
            "K8S_POD_UID": f"uid-{key}",
        }
        if ip:
            args.update(IgnoreUnknown="1", IP=ip)
        attachment = Attachment(container_id, "eth0", netns.path(pod_ns), args)
        pod = LabPod(key, network, role, node, pod_ns, attachment)
        result = self.nodes[node].runner.add(self.networks[(node, network)], attachment)
        pod.ips = tuple(entry["address"].split("/")[0] for entry in result.get("ips", []))
        pod.station = Station(pod_ns)
        self.pods[key] = pod
        return pod

    def delete_pod(self, key: str) -> None:
        pod = self.pods.pop(key)
        self.nodes[pod.node].runner.delete(self.networks[(pod.node, pod.network)], pod.attachment)
        if pod.station is not None:
            pod.station.stop()
        netns.delete(pod.netns)
        self.namespaces.remove(pod.netns)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        stations = [p.station for p in self.pods.values()]
        stations += [self.outside_station, self.node_station]
        for station in stations:
            if station is not None:
                station.stop()
        for name in reversed(self.namespaces):
            netns.delete(name)

    # --- policy -------------------------------------------------------------------

    def documents(self) -> list[dict[str, Any]]:
        """The lab's Namespace, Pods and policies (``attack_policies``)."""
        pods = [(p.key, p.role, p.network, p.node, p.ips) for p in self.pods.values()]
        return attack_policies.documents(pods)

    def program(self, *, full: bool = False) -> None:
        """Compile the lab's policies for each node and apply them."""
        snapshot = cluster.Snapshot.from_documents(self.documents())
        for index, node in self.nodes.items():
            records = list(endpoints.read_all(node.dir("state")))
            compiled = compiler.compile_node(snapshot, records)
            assert not compiled.unmatched, compiled.unmatched
            with entered(node.name):
                self.appliers[index].apply(
                    compiled.families, endpoints=compiled.endpoints, full=full
                )

    # --- probing ------------------------------------------------------------------

    def stations(self) -> dict[str, Station]:
        found = {key: pod.station for key, pod in self.pods.items() if pod.station is not None}
        assert self.outside_station is not None and self.node_station is not None
        return {**found, OUTSIDE: self.outside_station, NODE: self.node_station}

    def received(self) -> dict[str, list[dict[str, Any]]]:
        """Every station's markers, and forget them."""
        found = {}
        for key, station in self.stations().items():
            found[key] = station.call("report")
            station.call("clear")
        return found

    def address(self, key: str, family: model.Family) -> str:
        if key in (OUTSIDE, NODE):
            return underlay(OUTSIDE_INDEX if key == OUTSIDE else 1, family)
        return self.pods[key].ip(family)

    def node_link_local(self, index: int, interface: str) -> str:
        shown = self.nodes[index].run(["ip", "-j", "-6", "addr", "show", "dev", interface])
        found = json.loads(shown)[0]["addr_info"]
        return next(str(a["local"]) for a in found if a.get("scope") == "link")

    def station(self, key: str) -> Station:
        return self.stations()[key]


def make_applier(backend: str, node: cni_helpers.Node) -> applier_mod.NodeApplier:
    """The writer the node's agent would use (call inside the node)."""
    if backend == backends.NFTABLES:
        return NftApplier(run_dir=node.dir("run"), state_dir=node.dir("state"))
    return applier_mod.Applier(
        backends.get_backend(backend), run_dir=node.dir("run"), state_dir=node.dir("state")
    )


@contextlib.contextmanager
def podwall_switched_off(lab: AttackLab) -> Iterator[None]:
    """Take podwall out of the packet path on both nodes, and put it back
    (the appliers rewrite everything)."""
    for node in lab.nodes.values():
        if lab.backend == backends.NFTABLES:
            for family in ("inet", "bridge"):
                node.run(["nft", "delete", "table", family, "podwall"])
        else:
            variant = "nft" if lab.backend == "iptables-nft" else "legacy"
            for tool in (f"iptables-{variant}", f"ip6tables-{variant}"):
                for chain in ("FORWARD", "INPUT"):
                    node.run([tool, "-I", chain, "1", "-j", "ACCEPT"])
    try:
        yield
    finally:
        for node in lab.nodes.values():
            if lab.backend != backends.NFTABLES:
                variant = "nft" if lab.backend == "iptables-nft" else "legacy"
                for tool in (f"iptables-{variant}", f"ip6tables-{variant}"):
                    for chain in ("FORWARD", "INPUT"):
                        node.run([tool, "-D", chain, "-j", "ACCEPT"])
        lab.program(full=True)
