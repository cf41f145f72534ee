"""What ``podwall explain`` is asked, resolved against a snapshot, and answered.

An endpoint is a pod (``NS/NAME``), an address (``169.254.169.254``, ``fd00::1``)
or a CIDR (``10.0.0.0/8``).  An address that belongs to a pod of the snapshot
*is* that pod; a CIDR stands for addresses outside the pods (ipBlocks and
FirewallRule networks decide for them, selectors never).  One end must be a
pod: podwall filters pod traffic only.

The families answered: the one ``--family`` asks for, else the family of an
address end, else the families both pods have (a dual-stack pair is answered
once per family), else those either has, else IPv4.  ``ask`` calls
``evaluate`` only; it decides nothing itself.  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from firewall_operator import cidrs, cluster, evaluate
from firewall_operator.errors import QuestionError
from firewall_operator.planner import Planner
from firewall_plugin import model

FAMILIES: tuple[model.Family, ...] = ("ipv4", "ipv6")
MAX_NAMED = 5


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A pod, or a network (a single address is a /32 or /128)."""

    text: str
    pod: cluster.Pod | None = None
    network: cidrs.Network | None = None

    @property
    def family(self) -> model.Family | None:
        return None if self.network is None else cidrs.family(self.network)

    @property
    def single_address(self) -> bool:
        return self.network is not None and self.network.num_addresses == 1


@dataclass(frozen=True, slots=True)
class Answer:
    """Verdicts for one question: one per family (pod pairs, addresses), or one
    per piece of a CIDR that the rules treat alike; ``notes`` for the reader."""

    source: Endpoint
    destination: Endpoint
    port: int
    protocol: str
    verdicts: tuple[evaluate.Verdict, ...]
    notes: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return all(verdict.allowed for verdict in self.verdicts)


def _network(text: str) -> cidrs.Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def endpoint(text: str, snapshot: cluster.Snapshot, flag: str) -> tuple[Endpoint, list[str]]:
    """``text`` as an endpoint, and notes about how it was read."""
    pods = {pod.key: pod for pod in snapshot.pods}
    if text in pods:
        return Endpoint(text, pod=pods[text]), []
    network = _network(text)
    if network is None:
        if "/" in text:
            raise QuestionError(f"{flag} {text}: no such pod (NS/NAME), and not an IP or CIDR")
        raise QuestionError(f"{flag} {text}: not NS/NAME, an IP address or a CIDR")
    if network.num_addresses == 1:
        owner = next(
            (pod for pod in snapshot.pods if str(network.network_address) in pod.ips), None
        )
        if owner is not None:
            return Endpoint(text, pod=owner), [f"{text} is pod {owner.key}"]
        return Endpoint(text, network=network), []
    inside = sorted(pod.key for pod in snapshot.pods if _holds(network, pod.ips))
    notes = []
    if inside:
        named = ", ".join(inside[:MAX_NAMED]) + (", ..." if len(inside) > MAX_NAMED else "")
        notes.append(
            f"{text} holds pod addresses ({named}): they are answered as addresses; "
            "name a pod to ask about it"
        )
    return Endpoint(text, network=network), notes


def _holds(network: cidrs.Network, ips: Iterable[str]) -> bool:
    return any(cidrs.contains(network, ip) for ip in ips)


def _pod_families(pod: cluster.Pod) -> set[model.Family]:
    return {model.family_of(ip) for ip in pod.ips}


def families(
    source: Endpoint, destination: Endpoint, requested: model.Family | None
) -> tuple[model.Family, ...]:
    """The families to answer in (see module doc)."""
    address = source.family or destination.family
    if address is not None:
        if requested is not None and requested != address:
            raise QuestionError(f"--family {requested}: the address end is {address}")
        return (address,)
    if requested is not None:
        return (requested,)
    assert source.pod is not None and destination.pod is not None
    mine, theirs = _pod_families(source.pod), _pod_families(destination.pod)
    found = (mine & theirs) or (mine | theirs) or {"ipv4"}
    return tuple(family for family in FAMILIES if family in found)


def ask(
    planner: Planner,
    source: Endpoint,
    destination: Endpoint,
    *,
    port: int,
    protocol: str,
    family: model.Family | None = None,
    notes: Iterable[str] = (),
) -> Answer:
    """The verdicts for ``source`` → ``destination`` (see module doc)."""
    if source.pod is None and destination.pod is None:
        raise QuestionError("one end must be a pod: podwall filters only pod traffic")
    found: list[evaluate.Verdict] = []
    for fam in families(source, destination, family):
        evaluator = evaluate.Evaluator(planner, family=fam)
        if source.pod is not None and destination.pod is not None:
            found.append(evaluator.verdict(source.pod, destination.pod, port, protocol))
        elif source.pod is not None:
            assert destination.network is not None
            found += _addresses(evaluator, source.pod, destination.network, port, protocol, True)
        else:
            assert source.network is not None and destination.pod is not None
            found += _addresses(evaluator, destination.pod, source.network, port, protocol, False)
    return Answer(source, destination, port, protocol, tuple(found), tuple(notes))


def _addresses(
    evaluator: evaluate.Evaluator,
    pod: cluster.Pod,
    network: cidrs.Network,
    port: int,
    protocol: str,
    outward: bool,
) -> list[evaluate.Verdict]:
    if network.num_addresses == 1:
        ip = str(network.network_address)
        if outward:
            return [evaluator.to_address(pod, ip, port, protocol)]
        return [evaluator.from_address(ip, pod, port, protocol)]
    if outward:
        pieces = evaluator.to_network(pod, network, port, protocol)
    else:
        pieces = evaluator.from_network(network, pod, port, protocol)
    return [verdict for _, verdict in pieces]


def matrix_families(
    snapshot: cluster.Snapshot, requested: model.Family | None
) -> tuple[model.Family, ...]:
    """``--matrix``: the requested family, else every family a pod has (IPv4
    when no pod has an address)."""
    if requested is not None:
        return (requested,)
    found = {family for pod in snapshot.pods for family in _pod_families(pod)}
    return tuple(family for family in FAMILIES if family in found) or ("ipv4",)


def matrices(
    planner: Planner, families_: Iterable[model.Family], *, port: int, protocol: str
) -> list[Mapping[str, object]]:
    """One ``evaluate`` matrix per family, each with its ``family``."""
    return [
        {**evaluate.Evaluator(planner, family=fam).matrix(port, protocol), "family": fam}
        for fam in families_
    ]
