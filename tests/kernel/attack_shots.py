"""The spoofing matrix of the attack lab: which datagrams are sent, by whom,
with which claimed source, and whether each must arrive.

A ``Shot`` is one marked datagram (sent three times).  ``fire(lab, shots)``
sends them all in order, waits, and answers which markers reached their
target's station.  ``spoofing_matrix(lab)`` is the issue's matrix: forged
sources (a pod of the same node, a pod of the other node, the node's gateway
and underlay addresses, an unused pod-range address, an external address,
and a pod's address inside one of its established flows) towards a victim
of each node that admits only trusted pods, and towards the outside host
under the attacker's egress deny; plus the legitimate controls.

Test support only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from firewall_plugin import model
from tests.kernel.attack_lab import (
    EXTERNAL,
    FLOW_PORT,
    NETWORKS,
    OUTSIDE,
    PORT,
    AttackLab,
    underlay,
    unused,
)

_markers = itertools.count(1)
SETTLE = 0.6


@dataclass(frozen=True)
class Shot:
    label: str
    sender: str
    target: str
    family: model.Family
    expected: bool
    source: str | None = None  # a forged source; None: a plain datagram
    sport: int = 0
    dport: int = PORT
    marker: str = ""

    @property
    def network(self) -> str:
        """The network of the shot (labels start with it)."""
        return self.label.split()[0]

    def send(self, lab: AttackLab) -> None:
        to = lab.address(self.target, self.family)
        station = lab.station(self.sender)
        if self.source is None:
            station.call("udp", sport=self.sport, to=to, dport=self.dport, data=self.marker)
        else:
            station.call("forge", source=self.source, to=to, sport=self.sport or 33333,
                         dport=self.dport, data=self.marker)  # fmt: skip


def shot(label: str, sender: str, target: str, family: model.Family, expected: bool,
         **extra: object) -> Shot:  # fmt: skip
    return Shot(label, sender, target, family, expected, marker=f"pw-{next(_markers):08d}",
                **extra)  # type: ignore[arg-type]  # fmt: skip


def fire(lab: AttackLab, shots: Sequence[Shot], *, settle: float = SETTLE) -> dict[Shot, bool]:
    """Send every shot in order; which of them reached their target."""
    for item in shots:
        item.send(lab)
    time.sleep(settle)
    received = lab.received()
    return {
        item: any(entry["data"] == item.marker for entry in received.get(item.target, []))
        for item in shots
    }


def wrong(outcome: dict[Shot, bool]) -> list[str]:
    """One line per shot whose outcome is not the expected one."""
    return [
        f"{'DELIVERED' if got else 'lost'} (want {'delivered' if item.expected else 'dropped'}): "
        f"{item.label}"
        for item, got in outcome.items()
        if got != item.expected
    ]


def forged_sources(lab: AttackLab, network: str, family: model.Family) -> dict[str, str]:
    """What the attacker of ``network`` on node-1 claims to be."""
    pods = lab.pods
    return {
        "a pod of the same node": pods[f"{network}-t1"].ip(family),
        "a pod of the other node": pods[f"{network}-t2"].ip(family),
        "the node's gateway": pods[f"{network}-m1"].gateway(family),
        "the node's underlay address": underlay(1, family),
        "an unused pod-range address": unused(network, family),
        "an external address": EXTERNAL[family],
    }


def flows(network: str, family: model.Family) -> list[Shot]:
    """Established flows t1 <-> v1 and t2 <-> v1 (port 4444 <-> 9999)."""
    v1 = f"{network}-v1"
    found = []
    for peer in (f"{network}-t1", f"{network}-t2"):
        found.append(shot(f"{network} {family}: flow {peer} -> {v1}", peer, v1, family, True,
                          sport=FLOW_PORT))  # fmt: skip
        found.append(shot(f"{network} {family}: flow reply {v1} -> {peer}", v1, peer, family,
                          True, sport=PORT, dport=FLOW_PORT))  # fmt: skip
    return found


def forgeries(lab: AttackLab, network: str, family: model.Family) -> list[Shot]:
    """The attacker's forged datagrams (none may arrive)."""
    attacker = f"{network}-m1"
    targets = (f"{network}-v1", f"{network}-v2", OUTSIDE)
    found = [
        shot(
            f"{network} {family}: {attacker} claiming {what} ({source}) -> {target}",
            attacker,
            target,
            family,
            False,
            source=source,
        )
        for what, source in forged_sources(lab, network, family).items()
        for target in targets
    ]
    for peer in (f"{network}-t1", f"{network}-t2"):
        source = lab.pods[peer].ip(family)
        found.append(
            shot(f"{network} {family}: {attacker} injecting into {peer}'s established flow",
                 attacker, f"{network}-v1", family, False, source=source, sport=FLOW_PORT)
        )  # fmt: skip
    source = lab.pods[f"{network}-t1"].ip(family)
    found.append(
        shot(f"{network} {family}: the outside host claiming {network}-t1 -> {network}-v1",
             OUTSIDE, f"{network}-v1", family, False, source=source)
    )  # fmt: skip
    return found


def controls(network: str, family: model.Family) -> list[Shot]:
    """The same traffic from its legitimate sources, and the policy's denials."""
    m, t1, t2 = f"{network}-m1", f"{network}-t1", f"{network}-t2"
    v1, v2 = f"{network}-v1", f"{network}-v2"
    allowed = [(t1, v1), (t1, v2), (t2, v1), (t2, v2), (t1, OUTSIDE), (t2, OUTSIDE), (m, t1),
               (m, t2)]  # fmt: skip
    denied = [(m, v1), (m, v2), (m, OUTSIDE)]
    return [
        shot(f"{network} {family}: control {src} -> {dst}", src, dst, family, expected)
        for pairs, expected in ((allowed, True), (denied, False))
        for src, dst in pairs
    ]


def spoofing_matrix(
    lab: AttackLab, families: Iterable[model.Family] = model.FAMILIES
) -> tuple[list[Shot], list[Shot]]:
    """(first: the flows to establish, then: forgeries and controls)."""
    first: list[Shot] = []
    then: list[Shot] = []
    for network in NETWORKS:
        for family in families:
            first += flows(network, family)
            then += forgeries(lab, network, family) + controls(network, family)
    return first, then


def run_matrix(lab: AttackLab) -> dict[Shot, bool]:
    first, then = spoofing_matrix(lab)
    outcome = fire(lab, first, settle=0.3)
    outcome.update(fire(lab, then))
    return outcome
