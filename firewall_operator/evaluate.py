"""Pure verdicts: may this connection be opened, and which rule decided?

A connection from A to B is allowed iff A's egress allows it and B's ingress
allows it.  Each side walks its ``plan.DirectionPlan``: Admin tier (first
matching entry: Allow ends allowed, Deny ends denied, Pass skips to the next
tier) → NetworkPolicy tier (if selected: allowed by any rule, else denied) →
Baseline tier (Allow/Deny; Pass ends the tier) → default allow.  Replies are
always allowed (verdicts are per connection).

Outside policy: a pod reaching itself never leaves its network namespace
(allowed); hostNetwork pods are never filtered (their traffic does not pass the
node's FORWARD chain); a hostNetwork pod on the destination's own node reaches
it (the node is always allowed in), and a pod reaches hostNetwork pods of its
own node (that is the node).  ipBlock peers match by IP in the chosen family;
a pod without an IP of that family matches selectors only.

``matrix`` is the expected truth table that the compiler must make the kernel
produce (the lab's probe has the same JSON shape).  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from firewall_operator import cluster
from firewall_operator.netpol import Direction
from firewall_operator.plan import DirectionPlan, PlanRule, Tier
from firewall_operator.planner import Planner
from firewall_plugin import model

Outcome = Literal["allow", "deny", "pass", "no-match", "not-selected", "not-reached"]


@dataclass(frozen=True, slots=True)
class TierResult:
    tier: Tier
    outcome: Outcome
    origin: str = ""


@dataclass(frozen=True, slots=True)
class SideVerdict:
    """One direction's answer (egress of the sender or ingress of the receiver)."""

    direction: Direction
    pod: str
    allowed: bool
    reason: str
    tiers: tuple[TierResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    source: str
    destination: str
    port: int
    protocol: str
    allowed: bool
    egress: SideVerdict
    ingress: SideVerdict


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
            return TierResult(tier, rule.action.lower(), rule.origin)  # type: ignore[arg-type]
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
                results.append(TierResult("netpol", "deny", f"isolated by {selectors}"))
                final = False
    if final is None:
        results.append(_tier(plan.baseline, "baseline", packet))
        final = results[-1].outcome != "deny"
    else:
        for tier in ("netpol", "baseline")[len(results) - 1 :]:
            results.append(TierResult(tier, "not-reached"))  # type: ignore[arg-type]
    return final, tuple(results)


class Evaluator:
    """Verdicts for the pods of one snapshot (plans are shared and memoised)."""

    def __init__(
        self, snapshot: cluster.Snapshot | Planner, *, family: model.Family = "ipv4"
    ) -> None:
        self.planner = snapshot if isinstance(snapshot, Planner) else Planner(snapshot)
        self.index = self.planner.index
        self.family = family

    def _packet(self, peer: cluster.Pod, destination: cluster.Pod, port: int, proto: str) -> Packet:
        peer_id = None if peer.host_network else self.index.pod_id(peer.namespace, peer.name)
        return Packet(peer_id, peer.ip(self.family), port, proto, destination)

    def egress(self, src: cluster.Pod, dst: cluster.Pod, port: int, proto: str) -> SideVerdict:
        if src.host_network:
            return SideVerdict("egress", src.key, True, "hostNetwork pods are never filtered")
        if dst.host_network and dst.node and dst.node == src.node:
            return SideVerdict("egress", src.key, True, "to the pod's own node: always allowed")
        plan = self.planner.plan_for(src, "egress")
        allowed, tiers = decide(plan, self._packet(dst, dst, port, proto))
        return SideVerdict("egress", src.key, allowed, _reason(allowed, tiers), tiers)

    def ingress(self, src: cluster.Pod, dst: cluster.Pod, port: int, proto: str) -> SideVerdict:
        if dst.host_network:
            return SideVerdict("ingress", dst.key, True, "hostNetwork pods are never filtered")
        if src.host_network and src.node and src.node == dst.node:
            return SideVerdict("ingress", dst.key, True, "from the pod's own node: always allowed")
        plan = self.planner.plan_for(dst, "ingress")
        allowed, tiers = decide(plan, self._packet(src, dst, port, proto))
        return SideVerdict("ingress", dst.key, allowed, _reason(allowed, tiers), tiers)

    def verdict(self, src: cluster.Pod, dst: cluster.Pod, port: int, protocol: str) -> Verdict:
        if src.key == dst.key:
            same = SideVerdict("egress", src.key, True, "a pod reaching itself stays in its netns")
            return Verdict(src.key, dst.key, port, protocol, True, same, same)
        egress = self.egress(src, dst, port, protocol)
        ingress = self.ingress(src, dst, port, protocol)
        allowed = egress.allowed and ingress.allowed
        return Verdict(src.key, dst.key, port, protocol, allowed, egress, ingress)

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


def _reason(allowed: bool, tiers: tuple[TierResult, ...]) -> str:
    deciding = [t for t in tiers if t.outcome in ("allow", "deny")]
    if deciding:
        return f"{deciding[-1].outcome} by {deciding[-1].origin}"
    return "allowed by default (no tier decided)" if allowed else "denied"


def matrix(
    snapshot: cluster.Snapshot, *, port: int, protocol: str, family: model.Family = "ipv4"
) -> dict[str, object]:
    """The expected reachability matrix (see ``Evaluator.matrix``)."""
    return Evaluator(snapshot, family=family).matrix(port, protocol)
