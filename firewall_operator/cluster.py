"""The typed, pure snapshot of a cluster that policy semantics work on.

``Namespace``, ``Pod`` and ``Node`` hold only what policy needs (labels,
node, IPs, named container ports, hostNetwork; a Node's labels and the IPs of
its ``status.addresses``).  ``Snapshot.from_documents`` builds one from
Kubernetes objects as dicts (Namespace, Pod, Node, NetworkPolicy,
FirewallRule, the upstream ClusterNetworkPolicy, AdminNetworkPolicy and
BaselineAdminNetworkPolicy, ``kind: List``); objects it cannot use become
problems, never exceptions.  The upstream kinds land in ``cluster_policies``
as ``fwrule.FirewallRule`` objects (see ``upstream``).

Every namespace carries ``kubernetes.io/metadata.name=<name>`` (the API server
adds it); a namespace that pods or policies mention without a Namespace object
exists with just that label.  Pods in phase Succeeded/Failed are left out (their
IPs may already belong to another pod).

Pure: no I/O (``firewall_operator.loading`` reads files).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from firewall_operator import fwrule, netpol, upstream
from firewall_operator.problems import Problem
from firewall_plugin import model

NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    uid: str = ""
    node: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()
    ports: tuple[NamedPort, ...] = ()
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ip(self, family: model.Family) -> str | None:
        """The pod's first IP of ``family``, if any."""
        return next((ip for ip in self.ips if model.family_of(ip) == family), None)

    def named(self, name: str) -> tuple[NamedPort, ...]:
        return tuple(port for port in self.ports if port.name == name)


@dataclass(frozen=True, slots=True)
class Node:
    """A Node as ``nodes`` peers see it: labels and its addresses that are IPs."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()


def _labels(raw: object) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def namespace_from_dict(doc: Mapping[str, Any]) -> Namespace:
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    return Namespace(name, {**_labels(meta.get("labels")), NAME_LABEL: name})


def node_from_dict(doc: Mapping[str, Any]) -> Node:
    """``status.addresses`` of every type that holds an IP (InternalIP,
    ExternalIP; Hostname and DNS names are left out), in order, de-duplicated."""
    meta = doc.get("metadata") or {}
    status = doc.get("status") or {}
    raw = [a.get("address") for a in status.get("addresses") or [] if isinstance(a, Mapping)]
    return Node(str(meta.get("name") or ""), _labels(meta.get("labels")), _ips(raw))


def _ips(raw: Iterable[object]) -> tuple[str, ...]:
    ips = []
    for value in raw:
        try:
            ips.append(str(ipaddress.ip_address(str(value))))
        except ValueError:
            continue
    return tuple(dict.fromkeys(ips))


def _pod_ips(status: Mapping[str, Any]) -> tuple[str, ...]:
    raw = [entry.get("ip") for entry in status.get("podIPs") or [] if isinstance(entry, Mapping)]
    if not raw and status.get("podIP"):
        raw = [status.get("podIP")]
    return _ips(raw)


def _container_ports(spec: Mapping[str, Any]) -> tuple[NamedPort, ...]:
    ports = []
    for container in spec.get("containers") or []:
        for port in (container or {}).get("ports") or []:
            name, number = port.get("name"), port.get("containerPort")
            protocol = str(port.get("protocol") or "TCP").upper()
            if name and isinstance(number, int) and protocol in PROTOCOLS:
                ports.append(NamedPort(str(name), number, protocol))
    return tuple(dict.fromkeys(ports))


def pod_from_dict(doc: Mapping[str, Any]) -> Pod:
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    status = doc.get("status") or {}
    return Pod(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        node=str(spec.get("nodeName") or ""),
        labels=_labels(meta.get("labels")),
        ips=_pod_ips(status),
        ports=_container_ports(spec),
        host_network=bool(spec.get("hostNetwork")),
    )


def _flatten(docs: Iterable[object]) -> Iterator[Mapping[str, Any]]:
    for doc in docs:
        if not isinstance(doc, Mapping):
            continue
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
            yield from _flatten(doc.get("items") or [])
        else:
            yield doc


@dataclass(frozen=True)
class PodDelta:
    """A hint from whoever made a snapshot: its ``pods`` differ from ``base`` (an
    earlier snapshot's ``pods`` tuple) only at ``keys``; every other pod is the
    same object.  Lets an index that is at ``base`` move on in O(changes)."""

    base: tuple[Pod, ...]
    keys: frozenset[tuple[str, str]]  # (namespace, name)


@dataclass(frozen=True)
class Snapshot:
    """Everything policy depends on, as typed objects, plus load problems
    (and, not part of its value, an optional ``PodDelta`` hint)."""

    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    pods: tuple[Pod, ...] = ()
    policies: tuple[netpol.NetworkPolicy, ...] = ()
    firewall_rules: tuple[fwrule.FirewallRule, ...] = ()
    problems: tuple[Problem, ...] = ()
    cluster_policies: tuple[fwrule.FirewallRule, ...] = ()  # the upstream kinds
    nodes: tuple[Node, ...] = ()
    pod_delta: PodDelta | None = field(default=None, compare=False, repr=False)

    @property
    def tiered(self) -> tuple[fwrule.FirewallRule, ...]:
        """FirewallRules and the upstream cluster policies (every tiered policy)."""
        return self.firewall_rules + self.cluster_policies

    @classmethod
    def build(
        cls,
        *,
        namespaces: Iterable[Namespace] = (),
        pods: Iterable[Pod] = (),
        policies: Iterable[netpol.NetworkPolicy] = (),
        firewall_rules: Iterable[fwrule.FirewallRule] = (),
        problems: Iterable[Problem] = (),
        cluster_policies: Iterable[fwrule.FirewallRule] = (),
        nodes: Iterable[Node] = (),
    ) -> Snapshot:
        """Sorted, de-duplicated (last wins), with implied namespaces added."""
        by_name = {ns.name: ns for ns in namespaces}
        pod_map = {(p.namespace, p.name): p for p in pods}
        np_map = {(p.namespace, p.name): p for p in policies}
        for ns in {k[0] for k in pod_map} | {k[0] for k in np_map}:
            by_name.setdefault(ns, Namespace(ns, {NAME_LABEL: ns}))
        fw_map = {rule.name: rule for rule in firewall_rules}
        up_map = {(rule.kind, rule.name): rule for rule in cluster_policies}
        node_map = {node.name: node for node in nodes}
        return cls(
            namespaces=dict(sorted(by_name.items())),
            pods=tuple(pod_map[k] for k in sorted(pod_map)),
            policies=tuple(np_map[k] for k in sorted(np_map)),
            firewall_rules=tuple(fw_map[k] for k in sorted(fw_map)),
            problems=tuple(problems),
            cluster_policies=tuple(up_map[k] for k in sorted(up_map)),
            nodes=tuple(node_map[k] for k in sorted(node_map)),
        )

    @classmethod
    def from_documents(cls, docs: Iterable[object]) -> Snapshot:
        """A snapshot from Kubernetes objects; unknown kinds are reported."""
        namespaces, pods, policies, rules, problems = [], [], [], [], []
        upstreams, nodes = [], []
        for doc in _flatten(docs):
            kind = str(doc.get("kind") or "")
            if kind == "Namespace":
                namespaces.append(namespace_from_dict(doc))
            elif kind == "Pod":
                if (doc.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    pods.append(pod_from_dict(doc))
            elif kind == "NetworkPolicy":
                policies.append(netpol.parse(doc))
            elif kind == "FirewallRule":
                rules.append(fwrule.parse(doc))
            elif kind in upstream.KINDS:
                upstreams.append(upstream.parse(doc))
            elif kind == "Node":
                nodes.append(node_from_dict(doc))
            else:
                name = str((doc.get("metadata") or {}).get("name") or "")
                problems.append(
                    Problem(kind or "?", "", name, "kind not used by podwall", "warning")
                )
        return cls.build(
            namespaces=namespaces,
            pods=pods,
            policies=policies,
            firewall_rules=rules,
            problems=problems,
            cluster_policies=upstreams,
            nodes=nodes,
        )

    def all_problems(self) -> list[Problem]:
        """Load problems plus the problems of every policy and rule, sorted."""
        found = list(self.problems)
        for policy in self.policies:
            found += policy.problems
        for rule in self.tiered:
            found += rule.problems
        return sorted(set(found))
