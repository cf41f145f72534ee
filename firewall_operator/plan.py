"""What applies to one pod in one direction: the tiers, in evaluation order.

This is the single home of policy semantics.  ``Planner.plan`` turns the
snapshot into a ``DirectionPlan`` per pod and direction: the Admin-tier
FirewallRule entries (by priority, then name, then rule order), the
NetworkPolicy tier (``None`` when no policy selects the pod in this direction,
else the union of allow rules of every selecting policy, ``()`` allowing
nothing), and the Baseline tier.  ``evaluate`` walks plans with concrete
packets; ``compiler`` renders the same plans into chains and ipsets.

Peer and port matches are resolved here once: ``PeerMatch.pods`` holds pod ids
(hostNetwork pods never), ``nets``/``excepts`` hold CIDRs.  Named ports stay
names: they resolve on the destination of the connection (the pod itself for
ingress, the peer for egress), which ``PortMatch.matches`` receives.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from firewall_operator import cidrs, cluster, fwrule, netpol
from firewall_operator.index import Selection
from firewall_operator.netpol import Direction

Tier = Literal["admin", "netpol", "baseline"]
Action = Literal["Allow", "Deny", "Pass"]
DIRECTIONS: tuple[Direction, ...] = ("ingress", "egress")


@dataclass(frozen=True, slots=True)
class PeerMatch:
    """Any peer (``key == "*"``), pods by id (and the ``selection`` they were
    resolved from), or networks minus exceptions."""

    key: str
    pods: frozenset[int] | None = None
    nets: tuple[cidrs.Network, ...] = ()
    excepts: tuple[cidrs.Network, ...] = ()
    selection: Selection | None = None

    @property
    def kind(self) -> Literal["any", "pods", "nets"]:
        if self.pods is not None:
            return "pods"
        return "nets" if self.nets else "any"

    def matches(self, pod_id: int | None, ip: str | None) -> bool:
        """Does a peer (a selectable pod's id, or None; its IP, or None) match?"""
        if self.pods is not None:
            return pod_id is not None and pod_id in self.pods
        if not self.nets:
            return True
        if ip is None or not any(cidrs.contains(net, ip) for net in self.nets):
            return False
        return not any(cidrs.contains(net, ip) for net in self.excepts)


ANY_PEER = PeerMatch("*")


@dataclass(frozen=True, slots=True)
class PortMatch:
    """Every packet (no protocol, no name), a port range of one protocol, or a
    named port (``protocol`` None: the container port's protocol)."""

    protocol: str | None = None
    start: int = 1
    end: int = 65535
    name: str | None = None

    @property
    def is_any(self) -> bool:
        return self.protocol is None and self.name is None

    def matches(self, port: int, protocol: str, destination: cluster.Pod | None) -> bool:
        if self.name is not None:
            if destination is None or destination.host_network:
                return False
            return any(
                named.port == port and named.protocol == protocol
                for named in destination.named(self.name)
                if self.protocol in (None, named.protocol)
            )
        if self.protocol is None:
            return True
        return self.protocol == protocol and self.start <= port <= self.end


ANY_PORT = PortMatch()


@dataclass(frozen=True, slots=True)
class PlanRule:
    """One rule of a tier.  ``origin`` is the whole name for comments
    ("FirewallRule no-web ingress deny-web"); ``policy`` ("FirewallRule
    no-web", "NetworkPolicy x/allow") and ``rule`` ("deny-web", "ingress[0]")
    are its parts for sentences, log tags and metric labels.  ``log``: log the
    packets this rule decides."""

    tier: Tier
    action: Action
    origin: str
    peers: tuple[PeerMatch, ...] = (ANY_PEER,)
    ports: tuple[PortMatch, ...] = (ANY_PORT,)
    log: bool = False
    log_name: str = ""
    policy: str = ""
    rule: str = ""


@dataclass(frozen=True, slots=True)
class DirectionPlan:
    """``netpol_selectors`` name what isolates the pod in this direction;
    ``netpol_log``: one of them asks for its drops to be logged (the
    NetworkPolicy ``podwall.io/log`` annotation)."""

    direction: Direction
    admin: tuple[PlanRule, ...] = ()
    netpol: tuple[PlanRule, ...] | None = None
    netpol_selectors: tuple[str, ...] = ()
    baseline: tuple[PlanRule, ...] = ()
    netpol_log: bool = False


def np_port(port: netpol.Port) -> PortMatch:
    if isinstance(port.port, str):
        return PortMatch(port.protocol, name=port.port)
    if port.port is None:
        return PortMatch(port.protocol)
    return PortMatch(port.protocol, port.port, port.end_port or port.port)


def fw_port(port: fwrule.Port) -> PortMatch:
    if port.name is not None:
        return PortMatch(None, name=port.name)
    return PortMatch(port.protocol, port.start, port.end)
