"""Pure verdicts: may this connection be opened, and which rule decided?

A connection from A to B is allowed iff A's egress allows it and B's ingress
allows it.  Each side walks its ``plan.DirectionPlan``: Admin tier (first
matching entry: Allow ends allowed, Deny ends denied, Pass skips to the next
tier) → NetworkPolicy tier (if selected: allowed by any rule, else denied) →
Baseline tier (Allow/Deny; Pass ends the tier) → default allow.  Replies are
always allowed (verdicts are per connection).

Outside policy: a pod reaching itself never leaves its network namespace
(allowed); hostNetwork pods are never filtered (their traffic does not pass
through a pod's chains); a hostNetwork pod on the destination's own node
reaches it (the node's own traffic leaves through OUTPUT and is always allowed
in).  A pod reaching a hostNetwork pod of its own node reaches its node: that
passes the pod's egress policy (its INPUT path), where the node's address is
matched by network and ``nodes`` peers, never by pod selectors.  ipBlock
peers match by IP in the evaluator's family; a pod without an IP of that
family matches selectors only.

One end may be an address instead of a pod (``to_address``/``from_address``):
it is matched by network peers only, never by selectors, and podwall does not
filter the side that is not a pod.  ``to_network``/``from_network`` answer for
every address of a CIDR at once: the CIDR is cut where any network peer of the
pod's plan begins or ends, and adjacent pieces with the same verdict merge.

``matrix`` is the expected truth table that the compiler must make the kernel
produce (the lab's probe has the same JSON shape).  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from firewall_operator import cidrs, cluster
from firewall_operator.netpol import Direction
from firewall_operator.plan import DirectionPlan, PlanRule, Tier
from firewall_operator.planner import Planner
from firewall_plugin import model

Outcome = Literal["allow", "deny", "pass", "no-match", "not-selected", "not-reached"]


@dataclass(frozen=True, slots=True)
class TierResult:
    """What one tier said.  ``origin`` names the deciding rule whole
    (``PlanRule.origin``), ``policy``/``rule`` its parts; a NetworkPolicy-tier
    ``deny`` is isolation: ``policy`` lists what isolates the pod."""

    tier: Tier
    outcome: Outcome
    origin: str = ""
    policy: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class SideVerdict:
    """One direction's answer (egress of the sender or ingress of the receiver):
    ``pod`` is whose side it is, ``peer`` the other end; ``note`` says why no
    tier was walked (hostNetwork, own node, itself, not a pod)."""

    direction: Direction
    pod: str
    peer: str
    allowed: bool
    tiers: tuple[TierResult, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    source: str
    destination: str
    port: int
    protocol: str
    allowed: bool
    egress: SideVerdict
    ingress: SideVerdict
    family: model.Family = "ipv4"


@dataclass(frozen=True, slots=True)
class Packet:
    """What a side sees of a connection: the peer and the destination port."""

    peer_id: int | None
    peer_ip: str | None
    port: int
    protocol: str
    destination: cluster.Pod | None


def _matches(rule: PlanRule, packet: Packet) -> bool:
    return any(p.matches(packet.peer_id, packet.peer_ip) for p in rule.peers) and any(
        p.matches(packet.port, packet.protocol, packet.destination) for p in rule.ports
    )


def _tier(rules: Sequence[PlanRule], tier: Tier, packet: Packet) -> TierResult:
    for rule in rules:
        if _matches(rule, packet):
            outcome: Outcome = rule.action.lower()  # type: ignore[assignment]
            return TierResult(tier, outcome, rule.origin, rule.policy, rule.rule)
    return TierResult(tier, "no-match")


def decide(plan: DirectionPlan, packet: Packet) -> tuple[bool, tuple[TierResult, ...]]:
    """Walk the tiers of one side; True when the side lets the packet through."""
    results = [_tier(plan.admin, "admin", packet)]
    final: bool | None = {"allow": True, "deny": False}.get(results[0].outcome)
    if final is None:
        if plan.netpol is None:
            results.append(TierResult("netpol", "not-selected"))
        else:
            found = _tier(plan.netpol, "netpol", packet)
            if found.outcome == "allow":
                results.append(found)
                final = True
            else:
                selectors = ", ".join(plan.netpol_selectors)
                results.append(TierResult("netpol", "deny", f"isolated by {selectors}", selectors))
                final = False
    if final is None:
        results.append(_tier(plan.baseline, "baseline", packet))
        final = results[-1].outcome != "deny"
    else:
        for tier in ("netpol", "baseline")[len(results) - 1 :]:
            results.append(TierResult(tier, "not-reached"))  # type: ignore[arg-type]
    return final, tuple(results)


def _pieces(plan: DirectionPlan, network: cidrs.Network) -> list[tuple[int, int]]:
    """``network`` cut where a network peer of ``plan`` begins or ends: on each
    piece (first, last address) every rule matches all addresses or none."""
    first, last = cidrs.bounds(network)
    cuts = {first, last + 1}
    for rule in (*plan.admin, *(plan.netpol or ()), *plan.baseline):
        for peer in rule.peers:
            for net in (*peer.nets, *peer.excepts):
                if net.version == network.version:
                    low, high = cidrs.bounds(net)
                    cuts.update(c for c in (low, high + 1) if first < c <= last)
    ordered = sorted(cuts)
    return [(a, b - 1) for a, b in itertools.pairwise(ordered)]


def _summarise(version: int, low: int, high: int) -> tuple[cidrs.Network, ...]:
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return tuple(ipaddress.summarize_address_range(make(low), make(high)))


class Evaluator:
    """Verdicts for the pods of one snapshot in one family (plans are shared
    and memoised; pass one ``Planner`` to evaluators of both families)."""

    def __init__(
        self, snapshot: cluster.Snapshot | Planner, *, family: model.Family = "ipv4"
    ) -> None:
        self.planner = snapshot if isinstance(snapshot, Planner) else Planner(snapshot)
        self.index = self.planner.index
        self.family = family

    def _packet(self, peer: cluster.Pod, destination: cluster.Pod, port: int, proto: str) -> Packet:
        peer_id = None if peer.host_network else self.index.pod_id(peer.namespace, peer.name)
        return Packet(peer_id, peer.ip(self.family), port, proto, destination)

    def _side(
        self, pod: cluster.Pod, direction: Direction, peer: str, packet: Packet
    ) -> SideVerdict:
        allowed, tiers = decide(self.planner.plan_for(pod, direction), packet)
        return SideVerdict(direction, pod.key, peer, allowed, tiers)

    def egress(self, src: cluster.Pod, dst: cluster.Pod, port: int, proto: str) -> SideVerdict:
        if src.host_network:
            return SideVerdict("egress", src.key, dst.key, True, note=HOST_NETWORK)
        return self._side(src, "egress", dst.key, self._packet(dst, dst, port, proto))

    def ingress(self, src: cluster.Pod, dst: cluster.Pod, port: int, proto: str) -> SideVerdict:
        if dst.host_network:
            return SideVerdict("ingress", dst.key, src.key, True, note=HOST_NETWORK)
        if src.host_network and src.node and src.node == dst.node:
            return SideVerdict("ingress", dst.key, src.key, True, note="from its own node")
        return self._side(dst, "ingress", src.key, self._packet(src, dst, port, proto))

    def verdict(self, src: cluster.Pod, dst: cluster.Pod, port: int, protocol: str) -> Verdict:
        if src.key == dst.key:
            same = SideVerdict("egress", src.key, dst.key, True, note=ITSELF)
            return Verdict(src.key, dst.key, port, protocol, True, same, same, self.family)
        egress = self.egress(src, dst, port, protocol)
        ingress = self.ingress(src, dst, port, protocol)
        allowed = egress.allowed and ingress.allowed
        return Verdict(src.key, dst.key, port, protocol, allowed, egress, ingress, self.family)

    def to_address(self, src: cluster.Pod, ip: str, port: int, protocol: str) -> Verdict:
        """``src`` opens a connection to ``ip``, an address that is not a pod."""
        if src.host_network:
            egress = SideVerdict("egress", src.key, ip, True, note=HOST_NETWORK)
        else:
            egress = self._side(src, "egress", ip, Packet(None, ip, port, protocol, None))
        ingress = SideVerdict("ingress", "", src.key, True, note=NOT_A_POD)
        return Verdict(src.key, ip, port, protocol, egress.allowed, egress, ingress, self.family)

    def from_address(self, ip: str, dst: cluster.Pod, port: int, protocol: str) -> Verdict:
        """``ip``, an address that is not a pod, opens a connection to ``dst``."""
        egress = SideVerdict("egress", "", dst.key, True, note=NOT_A_POD)
        if dst.host_network:
            ingress = SideVerdict("ingress", dst.key, ip, True, note=HOST_NETWORK)
        else:
            ingress = self._side(dst, "ingress", ip, Packet(None, ip, port, protocol, dst))
        return Verdict(ip, dst.key, port, protocol, ingress.allowed, egress, ingress, self.family)

    def to_network(
        self, src: cluster.Pod, network: cidrs.Network, port: int, protocol: str
    ) -> list[tuple[tuple[cidrs.Network, ...], Verdict]]:
        """``to_address`` for every address of ``network``: (networks, verdict)
        pieces, adjacent pieces with the same verdict merged."""
        return self._network(src, "egress", network, port, protocol)

    def from_network(
        self, network: cidrs.Network, dst: cluster.Pod, port: int, protocol: str
    ) -> list[tuple[tuple[cidrs.Network, ...], Verdict]]:
        """``from_address`` for every address of ``network`` (see ``to_network``)."""
        return self._network(dst, "ingress", network, port, protocol)

    def _network(
        self, pod: cluster.Pod, direction: Direction, network: cidrs.Network, port: int, proto: str
    ) -> list[tuple[tuple[cidrs.Network, ...], Verdict]]:
        merged: list[tuple[int, int, Verdict]] = []
        for low, high in _pieces(self.planner.plan_for(pod, direction), network):
            ip = str(ipaddress.ip_address(low))
            if direction == "egress":
                found = self.to_address(pod, ip, port, proto)
            else:
                found = self.from_address(ip, pod, port, proto)
            if merged and _same(merged[-1][2], found):
                merged[-1] = (merged[-1][0], high, merged[-1][2])
            else:
                merged.append((low, high, found))
        out = []
        for low, high, found in merged:
            nets = _summarise(network.version, low, high)
            name = _range_name(nets, low, high)
            end = "destination" if direction == "egress" else "source"
            out.append((nets, _renamed(found, end, name)))
        return out

    def matrix(self, port: int, protocol: str) -> dict[str, object]:
        """``{"port", "protocol", "pods", "reachable": {src: {dst: bool}}}`` for
        every ordered pair of pods, self pairs included (always true)."""
        pods = sorted(self.planner.snapshot.pods, key=lambda pod: pod.key)
        reachable = {
            src.key: {dst.key: self.verdict(src, dst, port, protocol).allowed for dst in pods}
            for src in pods
        }
        return {
            "port": port,
            "protocol": protocol,
            "pods": [pod.key for pod in pods],
            "reachable": reachable,
        }


HOST_NETWORK = "hostNetwork pods are never filtered"
ITSELF = "a pod reaching itself stays in its network namespace"
NOT_A_POD = "not a pod: podwall does not filter it"


def _range_name(nets: tuple[cidrs.Network, ...], low: int, high: int) -> str:
    """A CIDR, a single address, or ``first-last``."""
    if low == high:
        return str(ipaddress.ip_address(low))
    if len(nets) == 1:
        return str(nets[0])
    return f"{ipaddress.ip_address(low)}-{ipaddress.ip_address(high)}"


def _same(a: Verdict, b: Verdict) -> bool:
    return (a.allowed, a.egress.tiers, a.ingress.tiers) == (
        b.allowed,
        b.egress.tiers,
        b.ingress.tiers,
    )


def _renamed(verdict: Verdict, end: str, name: str) -> Verdict:
    """``verdict`` with the address end called ``name`` (a CIDR, not its first IP)."""
    if end == "destination":
        egress = dataclasses.replace(verdict.egress, peer=name)
        return dataclasses.replace(verdict, destination=name, egress=egress)
    ingress = dataclasses.replace(verdict.ingress, peer=name)
    return dataclasses.replace(verdict, source=name, ingress=ingress)


def matrix(
    snapshot: cluster.Snapshot, *, port: int, protocol: str, family: model.Family = "ipv4"
) -> dict[str, object]:
    """The expected reachability matrix (see ``Evaluator.matrix``)."""
    return Evaluator(snapshot, family=family).matrix(port, protocol)
