"""The incremental ``compiler.Compiler`` is level-triggered: after any sequence
of cluster and endpoint changes it returns exactly what a from-scratch
``compile_node`` returns for the same snapshot.

Small random clusters (hypothesis): pods relabelled, added, removed, moved to
other IPs (reused IPs included), given other ports or hostNetwork; namespaces
relabelled; NetworkPolicies, FirewallRules and ClusterNetworkPolicies added,
replaced, removed (invalid ones included); Nodes relabelled or readdressed
under ``nodes`` peers; endpoint records added, removed or stale.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firewall_operator import cluster, compiler, fwrule, netpol, upstream
from firewall_plugin.endpoints import EndpointRecord
from tests.unit.test_compiler import rendered

IPS = ("10.0.0.5", "10.0.0.200", "10.1.0.3", "fd00::5", "fd00:1::7")
PODS = [{}, {"matchLabels": {"app": "a"}}, {"matchExpressions": [
    {"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"matchExpressions": [
    {"key": "tier", "operator": "DoesNotExist"}]}, {"matchExpressions": [
    {"key": "app", "operator": "NotIn", "values": ["b"]}]}]  # fmt: skip
SPACES = [{}, {"matchLabels": {"env": "prod"}}, {"matchExpressions": [
    {"key": "env", "operator": "Exists"}]}]  # fmt: skip
BLOCKS: list[dict[str, Any]] = [
    {"cidr": "10.0.0.0/24", "except": ["10.0.0.128/25"]},
    {"cidr": "fd00::/32"},
    {"cidr": "0.0.0.0/0"},
]
NP_PORTS = [[], [{"port": "http"}], [{"port": 80}], [{"port": "dns", "protocol": "UDP"}],
            [{"port": 1000, "endPort": 2000}]]  # fmt: skip
FW_PORTS = [[], [{"namedPort": "http"}], [{"portNumber": {"port": 80, "protocol": "TCP"}}]]


def np_peer(pick: random.Random) -> dict[str, Any]:
    kind = pick.randrange(4)
    if kind == 0:
        return {"podSelector": pick.choice(PODS)}
    if kind == 1:
        return {"namespaceSelector": pick.choice(SPACES)}
    if kind == 2:
        return {"namespaceSelector": pick.choice(SPACES), "podSelector": pick.choice(PODS)}
    return {"ipBlock": pick.choice(BLOCKS)}


def policy(seed: int) -> netpol.NetworkPolicy:
    pick = random.Random(seed)
    spec: dict[str, Any] = {"podSelector": pick.choice(PODS)}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        if pick.random() < 0.6:
            peers = [np_peer(pick) for _ in range(pick.randrange(3))]
            spec[direction] = [{field: peers, "ports": pick.choice(NP_PORTS)}]
    spec["policyTypes"] = [d.capitalize() for d in ("ingress", "egress") if d in spec]
    if pick.random() < 0.1:
        spec["ingress"] = [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]
    namespace = pick.choice(("x", "y"))
    return netpol.parse({"metadata": {"namespace": namespace, "name": f"np{seed % 5}"},
                         "spec": spec})  # fmt: skip


NODE_IPS = ("10.0.0.5", "10.8.0.1", "10.8.0.2", "fd00:8::1")


def node(seed: int) -> cluster.Node:
    pick = random.Random(seed)
    labels = {"role": pick.choice(("worker", "control"))}
    return cluster.Node(f"n{seed % 3}", labels, tuple(pick.sample(NODE_IPS, pick.randrange(3))))


def fw_peer(pick: random.Random, direction: str = "ingress") -> dict[str, Any]:
    kind = pick.randrange(4 if direction == "egress" else 3)
    if kind == 3:
        return {"nodes": pick.choice(({}, {"matchLabels": {"role": "worker"}}))}
    if kind == 0:
        return {"namespaces": pick.choice(SPACES)}
    if kind == 1:
        return {
            "pods": {"namespaceSelector": pick.choice(SPACES), "podSelector": pick.choice(PODS)}
        }
    return {"networks": [pick.choice(BLOCKS)["cidr"]]}


def firewall_rule(seed: int) -> fwrule.FirewallRule:
    pick = random.Random(seed)
    tier = pick.choice(("Admin", "Baseline"))
    spec: dict[str, Any] = {
        "tier": tier,
        "priority": pick.randrange(3),
        "subject": {"namespaces": pick.choice(SPACES)}
        if pick.random() < 0.5
        else {"pods": {"namespaceSelector": pick.choice(SPACES), "podSelector": pick.choice(PODS)}},
    }
    for direction, field in (("ingress", "from"), ("egress", "to")):
        if pick.random() < 0.7:
            action = pick.choice(
                ("Allow", "Deny", "Pass") if tier == "Admin" else ("Allow", "Deny")
            )
            entry = {"name": "r", "action": action, "log": pick.random() < 0.2}
            peers = [fw_peer(pick, direction)]
            spec[direction] = [{**entry, field: peers, "ports": pick.choice(FW_PORTS)}]
    if pick.random() < 0.1:
        spec["priority"] = -1
    doc: dict[str, Any] = {"metadata": {"name": f"fw{seed % 4}", "generation": 1}, "spec": spec}
    if seed % 2:  # the same rule as a ClusterNetworkPolicy (Accept, protocols, no log)
        doc["kind"] = "ClusterNetworkPolicy"
        for entry in [*spec.get("ingress", []), *spec.get("egress", [])]:
            entry["action"] = {"Allow": "Accept"}.get(entry["action"], entry["action"])
            del entry["log"]
            ports = entry.pop("ports")
            if ports and "portNumber" in ports[0]:
                entry["protocols"] = [{"tcp": {"destinationPort": {"number": 80}}}]
            elif ports:
                entry["protocols"] = [{"destinationNamedPort": ports[0]["namedPort"]}]
        return upstream.parse(doc)
    return fwrule.parse(doc)


NODES_RULE = upstream.parse(
    {
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "to-workers", "generation": 1},
        "spec": {
            "tier": "Admin",
            "priority": 1,
            "subject": {"namespaces": {}},
            "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "worker"}}}]}],
        },
    }
)


def pod(seed: int) -> cluster.Pod:
    pick = random.Random(seed)
    labels = {"app": pick.choice("abc")}
    if pick.random() < 0.4:
        labels["tier"] = "web"
    ports = [
        cluster.NamedPort("http", pick.choice((80, 8080))),
        cluster.NamedPort("dns", 53, "UDP"),
    ]
    return cluster.Pod(
        namespace=pick.choice(("x", "y", "z")),
        name=f"p{seed % 7}",
        uid=f"u{seed % 3}",
        node=pick.choice(("n1", "n1", "n2")),
        labels=labels,
        ips=tuple(dict.fromkeys(pick.sample(IPS, pick.randrange(3)))),
        ports=tuple(pick.sample(ports, pick.randrange(3))),
        host_network=pick.random() < 0.1,
    )


class World:
    """A mutable cluster; ``apply`` turns one (operation, seed) into a change."""

    def __init__(self) -> None:
        self.namespaces = {n: cluster.Namespace(n, {cluster.NAME_LABEL: n}) for n in "xyz"}
        self.pods = {(p.namespace, p.name): p for p in map(pod, range(6))}
        self.policies = {(p.namespace, p.name): p for p in map(policy, range(3))}
        self.rules = {r.key: r for r in [*map(firewall_rule, range(2)), NODES_RULE]}
        self.nodes = {n.name: n for n in map(node, range(3))}
        self.ghost = False

    def apply(self, operation: int, seed: int) -> None:
        pick = random.Random(seed)
        keys = sorted(self.pods)
        if operation == 0 and keys:  # relabel one pod
            key = pick.choice(keys)
            labels = {**self.pods[key].labels, "app": pick.choice("abc")}
            self.pods[key] = dataclasses.replace(self.pods[key], labels=labels)
        elif operation == 1:  # add or replace a pod
            new = pod(seed)
            self.pods[(new.namespace, new.name)] = new
        elif operation == 2 and keys:
            del self.pods[pick.choice(keys)]
        elif operation == 3:
            name = pick.choice("xyzw")
            labels = {cluster.NAME_LABEL: name, **({"env": "prod"} if pick.random() < 0.5 else {})}
            self.namespaces[name] = cluster.Namespace(name, labels)
        elif operation == 4:
            new_policy = policy(seed)
            self.policies[(new_policy.namespace, new_policy.name)] = new_policy
        elif operation == 5 and self.policies:
            del self.policies[pick.choice(sorted(self.policies))]
        elif operation == 6:
            rule = firewall_rule(seed)
            self.rules[rule.key] = rule
        elif operation == 7 and self.rules:
            del self.rules[pick.choice(sorted(self.rules))]
        elif operation == 8:  # equal objects, new identities
            self.pods = {k: dataclasses.replace(p) for k, p in self.pods.items()}
        elif operation == 9:
            self.ghost = not self.ghost
        elif operation == 10 and keys:  # the same pod at other IPs
            key = pick.choice(keys)
            ips = tuple(dict.fromkeys(pick.sample(IPS, pick.randrange(3))))
            self.pods[key] = dataclasses.replace(self.pods[key], ips=ips)
        elif operation == 11 and keys:  # the same pod with other named ports
            key = pick.choice(keys)
            ports = (cluster.NamedPort("http", pick.choice((80, 81))),)[: pick.randrange(2)]
            self.pods[key] = dataclasses.replace(self.pods[key], ports=ports)
        elif operation == 12:  # a Node relabelled, readdressed, added or replaced
            new_node = node(seed)
            self.nodes[new_node.name] = new_node

    def snapshot(self) -> cluster.Snapshot:
        return cluster.Snapshot.build(
            namespaces=self.namespaces.values(),
            pods=self.pods.values(),
            policies=self.policies.values(),
            firewall_rules=[r for r in self.rules.values() if r.kind == fwrule.KIND],
            cluster_policies=[r for r in self.rules.values() if r.kind != fwrule.KIND],
            nodes=self.nodes.values(),
        )

    def records(self) -> list[EndpointRecord]:
        out = [
            EndpointRecord.make(
                container_id=f"cid-{p.namespace}-{p.name}",
                ifname="eth0",
                podNamespace=p.namespace,
                podName=p.name,
                podUID=p.uid,
                ips=tuple(f"{ip}/{64 if ':' in ip else 24}" for ip in p.ips) or ("10.9.9.9/24",),
            )
            for p in self.pods.values()
            if p.node == "n1" and not p.host_network
        ]
        if self.ghost:
            out.append(EndpointRecord.make(container_id="cid-ghost", ifname="eth0",
                                           podNamespace="x", podName="p1", podUID="other",
                                           ips=("10.0.0.9/24", "fd00::9/64")))  # fmt: skip
        return out


def check(incremental: compiler.Compiler, world: World, step: str) -> None:
    snap, records = world.snapshot(), world.records()
    got = incremental.compile(snap, records)
    want = compiler.compile_node(snap, records, deny_action="reject")
    assert rendered(got) == rendered(want), step
    assert got == want, step


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 10_000)), max_size=10))
def test_incremental_equals_full(steps: list[tuple[int, int]]) -> None:
    world = World()
    incremental = compiler.Compiler(deny_action="reject")
    check(incremental, world, "start")
    for number, (operation, seed) in enumerate(steps):
        world.apply(operation, seed)
        check(incremental, world, f"step {number}: operation {operation} seed {seed}")


@pytest.mark.parametrize("operation", range(13), ids=lambda op: f"op{op}")
def test_each_change_kind(operation: int) -> None:
    world = World()
    incremental = compiler.Compiler(deny_action="reject")
    check(incremental, world, "start")
    for seed in range(8):
        world.apply(operation, seed)
        check(incremental, world, f"seed {seed}")


def test_same_snapshot_twice_reuses_everything() -> None:
    world = World()
    incremental = compiler.Compiler()
    snap, records = world.snapshot(), world.records()
    first = incremental.compile(snap, records)
    second = incremental.compile(snap, records)
    assert second == first
    for family, state in first.families.items():
        for name, chain in state.chains.items():
            assert second.families[family].chains[name] is chain
        for name, ipset in state.sets.items():
            assert second.families[family].sets[name] is ipset


def test_planner_before_first_compile() -> None:
    with pytest.raises(LookupError):
        _ = compiler.Compiler().planner


def test_a_failed_compile_starts_afresh() -> None:
    """A compile that raises after the planner moved on must not leave the
    caches of the snapshot before (the next call would see no change)."""
    world = World()
    incremental = compiler.Compiler(deny_action="reject")
    incremental.compile(world.snapshot(), world.records())

    def broken() -> Iterator[EndpointRecord]:
        yield from world.records()
        raise RuntimeError("endpoint directory vanished")

    for seed in range(6):
        world.apply(10, seed)  # other IPs: pod sets change, chains do not
        with pytest.raises(RuntimeError):
            incremental.compile(world.snapshot(), broken())
        check(incremental, world, f"seed {seed}")
