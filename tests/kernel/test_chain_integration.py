"""podwall chained after the real reference CNI plugins, with real traffic.

Every test builds a throwaway node netns, attaches pod namespaces through a
conflist (bridge/ptp + host-local, optionally portmap, bandwidth and the
reference firewall plugin, podwall last) with ``firewall_lab.cni_runner``,
and checks outcomes: probes blocked or passing, kernel state, CNI errors.
"""

from __future__ import annotations

import itertools
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from firewall_lab import probe
from firewall_lab.cni_conf import JSON
from firewall_lab.cni_errors import PluginError
from firewall_lab.cni_runner import as_network
from firewall_plugin import names
from tests.kernel import cni_helpers
from tests.kernel.cni_helpers import Node, Pod

TCP_PORT, UDP_PORT, SCTP_PORT = 8080, 5353, 9999
PORTS: dict[probe.Protocol, int] = {"TCP": TCP_PORT, "UDP": UDP_PORT, "SCTP": SCTP_PORT}
V4, V6 = "10.88.0.0/24", "fd00:88::/64"
BANDWIDTH = {
    "ingressRate": 1_000_000_000,
    "ingressBurst": 100_000_000,
    "egressRate": 1_000_000_000,
    "egressBurst": 100_000_000,
}


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    return Node(node_ns, str(tmp_path))


@dataclass(frozen=True)
class Topology:
    """The primary plugins podwall is chained after, and the pods' families."""

    primary: Callable[[Node], list[JSON]]
    families: tuple[str, ...] = ("ipv4",)
    capability_args: JSON = field(default_factory=dict)


TOPOLOGIES: dict[str, Topology] = {
    "bridge-ipv4": Topology(lambda n: [n.bridge([V4])]),
    "bridge-dualstack": Topology(lambda n: [n.bridge([V4, V6])], ("ipv4", "ipv6")),
    "ptp-ipv4": Topology(lambda n: [n.ptp([V4])]),
    "ptp-dualstack": Topology(lambda n: [n.ptp([V4, V6])], ("ipv4", "ipv6")),
    "bridge-portmap-bandwidth": Topology(
        lambda n: [n.bridge([V4]), cni_helpers.portmap(), cni_helpers.bandwidth()],
        capability_args={
            "portMappings": [{"hostPort": 30080, "containerPort": TCP_PORT, "protocol": "tcp"}],
            "bandwidth": BANDWIDTH,
        },
    ),
    "bridge-reference-firewall": Topology(
        lambda n: [n.bridge([V4]), cni_helpers.reference_firewall()]
    ),
}


def chain(node: Node, topology: Topology, pod_default: str = "deny", **podwall: Any) -> JSON:
    plugins = [*topology.primary(node), node.podwall(pod_default=pod_default, **podwall)]
    return cni_helpers.conflist(plugins)


Key = tuple[str, str, str, str]  # (from, to, family, protocol)


def reachability(pods: Mapping[str, Pod], families: tuple[str, ...]) -> dict[Key, bool]:
    """Probe every ordered pair of pods, every family and protocol at once."""
    servers = cni_helpers.parallel(
        lambda pod: probe.serve(pod.netns, tcp=[TCP_PORT], udp=[UDP_PORT], sctp=[SCTP_PORT]),
        pods.values(),
    )
    try:
        items: dict[Key, probe.Probe] = {}
        for (src, dst), family, proto in itertools.product(
            itertools.permutations(pods, 2), families, probe.PROTOCOLS
        ):
            target = probe.Target(pods[dst].ip(family), PORTS[proto], proto)
            items[(src, dst, family, proto)] = probe.Probe(pods[src].netns, target)
        found = probe.probe_many(items.values())
    finally:
        for server in servers:
            server.stop()
    return {key: found[item] for key, item in items.items()}


PLANES = ("nftables", "iptables-nft")


@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("topology", TOPOLOGIES.values(), ids=TOPOLOGIES.keys())
def test_deny_isolates_new_pod_both_ways_allow_leaves_pods_open(
    node: Node, make_ns: Any, topology: Topology, plane: str
) -> None:
    allow = chain(node, topology, "allow", backend=plane)
    deny = chain(node, topology, "deny", backend=plane)
    caps = topology.capability_args
    a, b = node.add_many(allow, [make_ns(), make_ns()], capability_args=caps)
    c = node.add(deny, make_ns(), capability_args=caps)
    got = reachability({"a": a, "b": b, "c": c}, topology.families)
    expected = {key: "c" not in key[:2] for key in got}
    wrong = {key: value for key, value in got.items() if value != expected[key]}
    assert not wrong, f"unexpected reachability (True = passed): {wrong}"
    node.delete(deny, [c])
    node.delete(allow, [a, b])
    assert node.trace() == []


@pytest.mark.parametrize("plane", PLANES)
def test_reference_firewall_accept_rules_sit_behind_podwall(
    node: Node, make_ns: Any, plane: str
) -> None:
    topology = TOPOLOGIES["bridge-reference-firewall"]
    net = chain(node, topology, "deny", backend=plane)
    pods = node.add_many(net, [make_ns(), make_ns()])
    table = node.table("nft", "ipv4")
    if plane == "iptables-nft":
        assert table.forward[0].endswith(f"-j {names.FORWARD_CHAIN}"), table.forward
    cni_admin = node.run(["iptables-nft", "-S", "CNI-FORWARD"])
    for pod in pods:
        assert f"-s {pod.ip()}/32" in cni_admin and "ACCEPT" in cni_admin
    got = reachability({"a": pods[0], "b": pods[1]}, ("ipv4",))
    assert not any(got.values()), got
    node.delete(net, pods)
    assert node.trace() == []


def podwall_state(node: Node, variant: str = "nft") -> dict[str, Any]:
    """podwall's chains and FORWARD in both families, and the record files."""
    state: dict[str, Any] = {f: node.table(variant, f) for f in ("ipv4", "ipv6")}
    records = os.path.join(node.dir("state"), "endpoints")
    for entry in sorted(os.listdir(records)) if os.path.isdir(records) else []:
        with open(os.path.join(records, entry)) as handle:
            state[entry] = handle.read()
    return state


def test_add_twice_is_idempotent(node: Node, make_ns: Any) -> None:
    net = chain(node, TOPOLOGIES["bridge-dualstack"])
    pod = node.add(net, make_ns())
    before = podwall_state(node)
    alone = as_network(net).select(["podwall"])
    again = node.runner.add(alone, pod.attachment, prev_result=pod.result)
    assert again["ips"] == pod.result["ips"]
    assert podwall_state(node) == before
    node.delete(net, [pod])
    assert node.trace() == []


BACKENDS = {
    "nftables": "",
    "iptables-nft": "nft",
    "iptables-legacy": "legacy",
    "iptc": "legacy",
}


def assert_programmed(node: Node, variant: str, pods: list[Pod]) -> None:
    """Both families: the hook jumps first, per-pod chains, dispatch by interface."""
    if not variant:
        return assert_programmed_nft(node, pods)
    for family in ("ipv4", "ipv6"):
        table = node.table(variant, family)
        assert table.forward[0].endswith(f"-j {names.FORWARD_CHAIN}"), table.forward
        assert table.hooks["INPUT"][0].endswith(f"-j {names.INPUT_CHAIN}"), table.hooks
        dispatch = " ".join(table.chains[names.FORWARD_CHAIN])
        to = " ".join(table.chains[names.TO_CHAIN])
        for pod in pods:
            container_id, ifname = pod.attachment.container_id, pod.attachment.ifname
            ingress = names.ingress_chain(container_id, ifname)
            egress = names.egress_chain(container_id, ifname)
            source = names.from_chain(container_id, ifname)
            assert {ingress, egress, source} <= set(table.chains)
            width = 128 if family == "ipv6" else 32
            assert "--physdev-in" in dispatch and f"-g {source}" in dispatch
            assert f"-s {pod.ip(family)}/{width}" in " ".join(table.chains[source])
            assert f"-j {egress}" in " ".join(table.chains[source])
            assert f"-d {pod.ip(family)}/{width}" in to and f"-j {ingress}" in to


def assert_programmed_nft(node: Node, pods: list[Pod]) -> None:
    text = node.run(["nft", "list", "table", "inet", "podwall"])
    for pod in pods:
        container_id, ifname = pod.attachment.container_id, pod.attachment.ifname
        for family, suffix in (("ipv4", "4"), ("ipv6", "6")):
            ingress = names.ingress_chain(container_id, ifname)
            egress = names.egress_chain(container_id, ifname)
            assert f'"cni0" . {pod.ip(family)} : jump {egress}-{suffix}' in text, text
            assert f'"cni0" . {pod.ip(family)} : jump {ingress}-{suffix}' in text, text
            assert f"chain {ingress}-{suffix} " in text


@pytest.mark.parametrize("backend", BACKENDS, ids=BACKENDS)
def test_add_check_del_leaves_no_trace(node: Node, make_ns: Any, backend: str) -> None:
    net = chain(node, TOPOLOGIES["bridge-dualstack"], backend=backend)
    pods = node.add_many(net, [make_ns(), make_ns()])
    assert_programmed(node, BACKENDS[backend], pods)
    assert len(node.trace()) > 0
    for pod in pods:
        node.runner.check(net, pod.attachment)
    node.delete(net, pods)
    assert node.trace() == []
    node.runner.delete(net, pods[0].attachment)  # nothing cached any more: still fine
    assert node.trace() == []


def _drop_rules(node: Node, chain_name: str, wanted: Callable[[str], bool]) -> None:
    table = node.table("nft", "ipv4")
    specs = table.forward if chain_name == "FORWARD" else table.chains.get(chain_name, [])
    dropped = [spec for spec in specs if wanted(spec)]
    assert dropped, f"nothing to remove in {chain_name}: {specs}"
    for spec in dropped:
        node.run(["iptables-nft", "-D", chain_name, *shlex.split(spec)])


def tamper_egress_rule(node: Node, pod: Pod) -> str:
    source = names.from_chain(pod.attachment.container_id, "eth0")
    _drop_rules(node, names.FORWARD_CHAIN, lambda spec: spec.endswith(f"-g {source}"))
    return "the dispatch to"


def tamper_ingress_chain(node: Node, pod: Pod) -> str:
    ingress = names.ingress_chain(pod.attachment.container_id, "eth0")
    _drop_rules(node, names.TO_CHAIN, lambda spec: spec.endswith(f"-j {ingress}"))
    node.run(["iptables-nft", "-F", ingress])
    node.run(["iptables-nft", "-X", ingress])
    return f"chain {ingress}"


def tamper_forward_jump(node: Node, pod: Pod) -> str:
    _drop_rules(node, "FORWARD", lambda spec: spec.endswith(f"-j {names.FORWARD_CHAIN}"))
    return "FORWARD jump"


def tamper_record(node: Node, pod: Pod) -> str:
    os.unlink(
        os.path.join(node.dir("state"), "endpoints", f"{pod.attachment.container_id}_eth0.json")
    )
    return "endpoint record"


TAMPERS: dict[str, Callable[[Node, Pod], str]] = {
    "egress-dispatch-rule-deleted": tamper_egress_rule,
    "ingress-chain-deleted": tamper_ingress_chain,
    "forward-jump-deleted": tamper_forward_jump,
    "endpoint-record-deleted": tamper_record,
}


@pytest.mark.parametrize("tamper", TAMPERS.values(), ids=TAMPERS.keys())
def test_check_fails_on_state_removed_by_hand(
    node: Node, make_ns: Any, tamper: Callable[[Node, Pod], str]
) -> None:
    net = chain(node, TOPOLOGIES["bridge-ipv4"])
    pod = node.add(net, make_ns())
    node.runner.check(net, pod.attachment)
    missing = tamper(node, pod)
    tampered = podwall_state(node)
    with pytest.raises(PluginError) as failure:
        node.runner.check(net, pod.attachment)
    assert (failure.value.plugin, failure.value.code) == ("podwall", 101)
    assert missing in failure.value.msg
    assert podwall_state(node) == tampered, "CHECK must not repair anything"
    node.delete(net, [pod])
    assert node.trace() == []


def test_gc_removes_attachments_not_named_valid(node: Node, make_ns: Any) -> None:
    net = chain(node, TOPOLOGIES["bridge-ipv4"])
    keep, *stale = node.add_many(net, [make_ns(), make_ns(), make_ns()])
    gc_net = as_network(net).select(["podwall"], cni_version="1.1.0")
    report = node.runner.gc(gc_net, valid=[keep.attachment], delete_stale=False)
    assert report.collected == ["podwall"]
    assert_programmed_only(node, keep)
    records = os.listdir(os.path.join(node.dir("state"), "endpoints"))
    assert records == [f"{keep.attachment.container_id}_eth0.json"]
    for pod in stale:  # the primary plugin's part is not podwall's to collect
        assert "eth0" in node.run(["ip", "netns", "exec", pod.netns, "ip", "-br", "link"])
    node.delete(net, [keep, *stale])
    assert node.trace() == []


def assert_programmed_only(node: Node, pod: Pod) -> None:
    table = node.table("nft", "ipv4")
    container_id = pod.attachment.container_id
    wanted = {
        names.FORWARD_CHAIN,
        names.INPUT_CHAIN,
        names.TO_CHAIN,
        names.from_chain(container_id, "eth0"),
        names.node_chain(container_id, "eth0"),
        names.ingress_chain(container_id, "eth0"),
        names.egress_chain(container_id, "eth0"),
    }
    assert set(table.chains) == wanted
    to = [spec for spec in table.chains[names.TO_CHAIN] if "-j PODWALL-" in spec]
    assert len(to) == 1 and pod.ip() in to[0], to


def test_status_ready_and_reference_plugins_skipped(node: Node, tmp_path: Any) -> None:
    net = as_network(chain(node, TOPOLOGIES["bridge-ipv4"]))
    assert node.runner.status(net.select(["podwall"], cni_version="1.1.0")) == []
    assert node.runner.status(net.select(["bridge", "podwall"], cni_version="1.1.0")) == ["bridge"]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    broken = cni_helpers.conflist(
        [cni_helpers.podwall(state_dir=str(blocker / "state"), run_dir=node.dir("run"))],
        version="1.1.0",
    )
    with pytest.raises(PluginError) as failure:
        node.runner.status(broken)
    assert failure.value.code == 50


BRIDGE_NF = "net.bridge.bridge-nf-call-iptables"


def test_bridge_netfilter_off_is_fixed_or_refused(node: Node, make_ns: Any) -> None:
    """podwall never runs unenforced behind a bridge: with the sysctl at 0 it
    sets it (ensureBridgeNetfilter, the default) or fails the ADD (code 102),
    and the runner's rollback then removes the bridge attachment too."""
    topology = TOPOLOGIES["bridge-ipv4"]
    node.run(["sysctl", "-q", "-w", f"{BRIDGE_NF}=0"])
    refusing = chain(node, topology, ensureBridgeNetfilter=False)
    pod_ns = make_ns()
    with pytest.raises(PluginError) as failure:
        node.runner.add(refusing, cni_helpers.attachment_for(pod_ns))
    assert (failure.value.plugin, failure.value.code) == ("podwall", 102)
    assert failure.value.cleanup_errors == []
    assert "eth0" not in node.run(["ip", "netns", "exec", pod_ns, "ip", "-br", "link"])
    assert node.trace() == []
    assert node.run(["sysctl", "-n", BRIDGE_NF]).strip() == "0"

    fixing = chain(node, topology)
    a, b = node.add_many(fixing, [pod_ns, make_ns()])
    assert node.run(["sysctl", "-n", BRIDGE_NF]).strip() == "1"
    got = reachability({"a": a, "b": b}, ("ipv4",))
    assert not any(got.values()), got
    node.delete(fixing, [a, b])
