"""Build ``plan.DirectionPlan`` objects from a snapshot (see ``plan``).

Which policies select a pod is looked up per pod on demand (one memoised
selection per policy selector, through the index); peers are resolved once per
distinct selector.  A plan is memoised per pod and direction.  ``update``
moves a planner to the next snapshot, keeping the index's selections.

FirewallRules and the upstream cluster policies (``Snapshot.tiered``) are one
list, ordered by ``FirewallRule.order``.  ``nodes`` peers are resolved here,
into the rule objects the planner hands out (``rules_for``): the addresses
of the Nodes they select become the peer's ``networks`` (a peer that selects
no Node with an address matches nothing), so a change of Node labels or
addresses changes those rule objects and with them every chain that uses
them.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import replace

from firewall_operator import cidrs, cluster, fwrule, netpol, selectors
from firewall_operator.index import Changes, ClusterIndex, Selection
from firewall_operator.netpol import Direction
from firewall_operator.plan import (
    ANY_PEER,
    ANY_PORT,
    DIRECTIONS,
    DirectionPlan,
    PeerMatch,
    PlanRule,
    Tier,
    fw_port,
    np_port,
)
from firewall_operator.problems import Problem


def _net_key(nets: tuple[cidrs.Network, ...], excepts: tuple[cidrs.Network, ...]) -> str:
    key = "nets " + ",".join(str(n) for n in nets)
    return key + (" except " + ",".join(sorted(str(e) for e in excepts)) if excepts else "")


def resolve_nodes(rule: fwrule.FirewallRule, nodes: Sequence[cluster.Node]) -> fwrule.FirewallRule:
    """``rule`` with each ``nodes`` peer's ``networks`` set to the addresses
    (as /32 and /128) of the Nodes it selects; ``rule`` itself if it has none."""
    if not any(p.node_selector is not None for e in rule.egress for p in e.peers):
        return rule

    def resolved(peer: fwrule.Peer) -> fwrule.Peer:
        if peer.node_selector is None:
            return peer
        nets = [
            ipaddress.ip_network(ip)
            for node in nodes
            if peer.node_selector.matches(node.labels)
            for ip in node.addresses
        ]
        return replace(peer, networks=tuple(dict.fromkeys(nets)))

    egress = tuple(replace(e, peers=tuple(resolved(p) for p in e.peers)) for e in rule.egress)
    return replace(rule, egress=egress)


def _policy_inputs(snapshot: cluster.Snapshot) -> tuple[object, ...]:
    return (snapshot.policies, snapshot.firewall_rules, snapshot.cluster_policies, snapshot.nodes)


class Planner:
    """Plans for the pods of one snapshot; ``update`` moves it to the next."""

    def __init__(self, snapshot: cluster.Snapshot) -> None:
        self.snapshot = snapshot
        self.index = ClusterIndex(snapshot)
        self._peers: dict[str, PeerMatch] = {}
        self._plans: dict[tuple[int, Direction], DirectionPlan] = {}
        #: (policies_for, rules_for) by pod: a pod's are the same until the
        #: pod, the namespaces or the policies change
        #: (inputs, the named ports declared, every port name used, problems): see problems
        self._problems: tuple[tuple[object, ...], frozenset[str], frozenset[str], list[Problem]]
        self._problems = (), frozenset(), frozenset(), []
        self._subjects: dict[
            int, tuple[tuple[netpol.NetworkPolicy, ...], tuple[fwrule.FirewallRule, ...]]
        ] = {}
        self._set_policies(snapshot)

    def _set_policies(self, snapshot: cluster.Snapshot) -> None:
        self._by_namespace: dict[str, list[tuple[netpol.NetworkPolicy, Selection]]] = {}
        for policy in snapshot.policies:
            selection = Selection(policy.namespace, None, policy.pod_selector)
            self._by_namespace.setdefault(policy.namespace, []).append((policy, selection))
        self._ordered_rules = [
            (
                resolve_nodes(rule, snapshot.nodes),
                Selection(None, rule.subject.namespace_selector, rule.subject.pod_selector),
            )
            for rule in sorted(snapshot.tiered, key=lambda r: r.order)
            if rule.subject is not None
        ]

    def update(self, snapshot: cluster.Snapshot) -> Changes:
        """Move to ``snapshot`` in place (see ``index.ClusterIndex.update``);
        plans and peers are recomputed on demand, selections are patched."""
        previous = self.snapshot
        changes = self.index.update(snapshot)
        self.snapshot = snapshot
        if _policy_inputs(previous) != _policy_inputs(snapshot):
            self._set_policies(snapshot)
            self._subjects.clear()
        elif previous.namespaces is not snapshot.namespaces and (
            previous.namespaces != snapshot.namespaces
        ):
            self._subjects.clear()
        else:
            for number in changes:
                self._subjects.pop(number, None)
        self._peers.clear()
        self._plans.clear()
        return changes

    def _subject(
        self, pod_id: int
    ) -> tuple[tuple[netpol.NetworkPolicy, ...], tuple[fwrule.FirewallRule, ...]]:
        found = self._subjects.get(pod_id)
        if found is None:
            found = self._subjects[pod_id] = (self._policies_for(pod_id), self._rules_for(pod_id))
        return found

    def policies_for(self, pod_id: int) -> tuple[netpol.NetworkPolicy, ...]:
        """The NetworkPolicies that select pod ``pod_id``, in snapshot order."""
        return self._subject(pod_id)[0]

    def rules_for(self, pod_id: int) -> tuple[fwrule.FirewallRule, ...]:
        """The tiered policies whose subject is pod ``pod_id``, in evaluation
        order (``FirewallRule.order``), with their ``nodes`` peers resolved."""
        return self._subject(pod_id)[1]

    def _policies_for(self, pod_id: int) -> tuple[netpol.NetworkPolicy, ...]:
        members = self.index.members
        return tuple(
            policy
            for policy, selection in self._by_namespace.get(self.index.pods[pod_id].namespace, ())
            if pod_id in members(selection)
        )

    def _rules_for(self, pod_id: int) -> tuple[fwrule.FirewallRule, ...]:
        members = self.index.members
        return tuple(
            rule for rule, selection in self._ordered_rules if pod_id in members(selection)
        )

    def pods_peer(
        self,
        *,
        namespace: str | None,
        namespace_selector: selectors.Selector | None,
        pod_selector: selectors.Selector | None,
    ) -> PeerMatch:
        scope = f"ns:{namespace}" if namespace_selector is None else f"nss:{namespace_selector.key}"
        key = f"pods {scope} {'*' if pod_selector is None else pod_selector.key}"
        if key not in self._peers:
            selection = Selection(namespace, namespace_selector, pod_selector)
            found = self.index.members(selection)
            self._peers[key] = PeerMatch(key, pods=found, selection=selection)
        return self._peers[key]

    def nets_peer(
        self, nets: tuple[cidrs.Network, ...], excepts: tuple[cidrs.Network, ...] = ()
    ) -> PeerMatch:
        key = _net_key(nets, excepts)
        return self._peers.setdefault(key, PeerMatch(key, nets=nets, excepts=excepts))

    def _np_peer(self, policy: netpol.NetworkPolicy, peer: netpol.Peer) -> PeerMatch:
        if peer.ip_block is not None:
            return self.nets_peer((peer.ip_block.cidr,), peer.ip_block.excepts)
        return self.pods_peer(
            namespace=policy.namespace,
            namespace_selector=peer.namespace_selector,
            pod_selector=peer.pod_selector,
        )

    def _fw_peer(self, peer: fwrule.Peer) -> PeerMatch:
        if peer.node_selector is not None and not peer.networks:
            key = f"nodes {peer.node_selector.key}: none"
            return self._peers.setdefault(key, PeerMatch(key, pods=frozenset()))
        if peer.networks:
            return self.nets_peer(peer.networks)
        return self.pods_peer(
            namespace=None,
            namespace_selector=peer.namespace_selector or selectors.EVERYTHING,
            pod_selector=peer.pod_selector,
        )

    def _np_rules(self, policy: netpol.NetworkPolicy, direction: Direction) -> list[PlanRule]:
        rules = []
        for number, rule in enumerate(policy.rules(direction)):
            rules.append(
                PlanRule(
                    tier="netpol",
                    action="Allow",
                    origin=f"NetworkPolicy {policy.key} {direction}[{number}]",
                    peers=tuple(self._np_peer(policy, p) for p in rule.peers) or (ANY_PEER,),
                    ports=tuple(np_port(p) for p in rule.ports) or (ANY_PORT,),
                    policy=f"NetworkPolicy {policy.key}",
                    rule=f"{direction}[{number}]",
                )
            )
        return rules

    def _fw_rules(self, rule: fwrule.FirewallRule, direction: Direction) -> list[PlanRule]:
        tier: Tier = "admin" if rule.tier == "Admin" else "baseline"
        return [
            PlanRule(
                tier=tier,
                action=entry.action,
                origin=f"{rule.kind} {rule.name} {direction} {entry.name}",
                peers=tuple(self._fw_peer(p) for p in entry.peers) or (ANY_PEER,),
                ports=tuple(fw_port(p) for p in entry.ports) or (ANY_PORT,),
                log=entry.log,
                log_name=f"{rule.key}/{entry.name}",
                policy=f"{rule.kind} {rule.name}",
                rule=entry.name,
            )
            for entry in rule.entries(direction)
        ]

    def plan(self, pod_id: int, direction: Direction) -> DirectionPlan:
        """The tiers that apply to pod ``pod_id`` in ``direction``."""
        key = (pod_id, direction)
        if key not in self._plans:
            self._plans[key] = self._build(pod_id, direction)
        return self._plans[key]

    def _build(self, pod_id: int, direction: Direction) -> DirectionPlan:
        if self.index.pods[pod_id].host_network:
            return DirectionPlan(direction)
        admin: list[PlanRule] = []
        baseline: list[PlanRule] = []
        selecting: list[str] = []
        allows: list[PlanRule] = []
        log = False
        for rule in self.rules_for(pod_id):
            if direction in rule.isolate:
                selecting.append(f"{rule.kind} {rule.name} (invalid)")
            (admin if rule.tier == "Admin" else baseline).extend(self._fw_rules(rule, direction))
        for policy in self.policies_for(pod_id):
            if direction in policy.policy_types:
                selecting.append(f"NetworkPolicy {policy.key}")
                allows.extend(self._np_rules(policy, direction))
                log = log or policy.log
        return DirectionPlan(
            direction=direction,
            admin=tuple(admin),
            netpol=tuple(allows) if selecting else None,
            netpol_selectors=tuple(selecting),
            baseline=tuple(baseline),
            netpol_log=log and bool(selecting),
        )

    def plan_for(self, pod: cluster.Pod, direction: Direction) -> DirectionPlan:
        pod_id = self.index.pod_id(pod.namespace, pod.name)
        return DirectionPlan(direction) if pod_id is None else self.plan(pod_id, direction)

    def problems(self) -> list[Problem]:
        """Every problem of the snapshot, plus a warning for each named port
        that no pod of the cluster declares (it matches nothing).  The same
        list as last time while the problems, the policies and which named
        ports some pod declares did not change."""
        snap = self.snapshot
        inputs = (snap.problems, snap.policies, snap.firewall_rules, snap.cluster_policies)
        known = self.index.by_port_name
        last = self._problems
        if (
            len(last[0]) == len(inputs)
            and all(a is b for a, b in zip(last[0], inputs, strict=True))
            and last[1] == frozenset(name for name in last[2] if name in known)
        ):
            return list(last[3])
        found = self._find_problems()
        named = frozenset(problem_port_names(snap))
        self._problems = (inputs, frozenset(n for n in named if n in known), named, found)
        return list(found)

    def _find_problems(self) -> list[Problem]:
        found = self.snapshot.all_problems()
        known = self.index.by_port_name
        for policy in self.snapshot.policies:
            for direction in DIRECTIONS:
                for rule in policy.rules(direction):
                    for port in rule.ports:
                        if isinstance(port.port, str) and port.port not in known:
                            reason = f"{direction}: no pod has a port named {port.port!r}"
                            found.append(
                                Problem(
                                    netpol.KIND, policy.namespace, policy.name, reason, "warning"
                                )
                            )
        for fw in self.snapshot.tiered:
            for direction in DIRECTIONS:
                for entry in fw.entries(direction):
                    for fport in entry.ports:
                        if fport.name is not None and fport.name not in known:
                            reason = (
                                f"{direction} {entry.name}: no pod has a port named {fport.name!r}"
                            )
                            found.append(Problem(fw.kind, "", fw.name, reason, "warning"))
        return sorted(set(found))


def problem_port_names(snapshot: cluster.Snapshot) -> Iterator[str]:
    """Every port name the snapshot's policies and tiered rules refer to."""
    for policy in snapshot.policies:
        for direction in DIRECTIONS:
            for rule in policy.rules(direction):
                for port in rule.ports:
                    if isinstance(port.port, str):
                        yield port.port
    for fw in snapshot.tiered:
        for direction in DIRECTIONS:
            for entry in fw.entries(direction):
                for fport in entry.ports:
                    if fport.name is not None:
                        yield fport.name
