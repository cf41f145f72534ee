"""Attacks on podwall, as an attacker would try them, on every backend.

One two-node lab per backend (``attack_lab``: bridge and ptp pods on both
nodes, an underlay, an outside host; the lab's policies compiled by
``firewall_operator.compiler`` and applied by each node's applier).  The
attacker ``m`` may send to pods only; the victims ``v`` admit only trusted
pods ``t`` (and an Admin FirewallRule denies attackers on top).  Forged
datagrams come from raw sockets in the attacker's namespace, which is what a
pod gets with the NET_RAW capability container runtimes grant by default.

Each test sends many probes at once and lists every wrong outcome; the
controls (the same traffic from its legitimate source, and the policy's own
denials) prove that what is dropped is dropped because it is forged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from firewall_lab import netns
from firewall_plugin.model import FAMILIES
from tests.conftest import kernel_ready
from tests.kernel import attack_shots as shots
from tests.kernel import cni_helpers
from tests.kernel.attack_lab import (
    BACKENDS,
    FLOW_PORT,
    NETWORKS,
    NODE,
    NODE_PORT,
    OUTSIDE,
    PORT,
    TCP_PORT,
    V4ONLY,
    AttackLab,
    LabPod,
    podwall_switched_off,
    underlay,
)


@pytest.fixture(scope="module", params=BACKENDS)
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AttackLab]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    made = AttackLab(str(tmp_path_factory.mktemp(f"attack-{request.param}")), request.param)
    try:
        made.start()
        made.program()
        yield made
    finally:
        made.stop()


def test_forged_sources_never_arrive(lab: AttackLab) -> None:
    """The spoofing matrix: bridge and ptp, IPv4 and IPv6; forged sources of
    every kind towards both victims and the outside host; none arrives, and
    the controls do what the policies say."""
    outcome = shots.run_matrix(lab)
    assert len(outcome) > 100
    assert not shots.wrong(outcome), "\n".join(shots.wrong(outcome))


def _martian(lab: AttackLab, shot: shots.Shot) -> bool:
    """An IPv4 forgery claiming an address of node-1 that node-1 routes: the
    kernel itself drops those (a local source arriving from outside)."""
    network = shot.network
    own = {underlay(1, "ipv4"), lab.pods[f"{network}-m1"].gateway("ipv4")}
    bridged = network == "bridge" and shot.target == "bridge-v1"
    return shot.family == "ipv4" and shot.source in own and not bridged


def test_without_podwall_the_forgeries_arrive(lab: AttackLab) -> None:
    """The same forgeries with podwall taken out of the packet path: they
    arrive (so the matrix above can fail), except the martians the kernel
    drops by itself."""
    first, then = shots.spoofing_matrix(lab)
    forged = [shot for shot in then if shot.source is not None]
    with podwall_switched_off(lab):
        shots.fire(lab, first, settle=0.3)
        outcome = shots.fire(lab, forged)
        side_doors = _side_doors_open(lab)
    assert not side_doors, "\n".join(side_doors)
    lost = [s.label for s, got in outcome.items() if not got and not _martian(lab, s)]
    arrived = [s.label for s, got in outcome.items() if got and _martian(lab, s)]
    assert not lost, "lost without podwall:\n" + "\n".join(lost)
    assert not arrived, "the kernel let these martians through:\n" + "\n".join(arrived)
    again = shots.run_matrix(lab)  # podwall is back
    assert not shots.wrong(again), "\n".join(shots.wrong(again))


def _side_doors_open(lab: AttackLab) -> list[str]:
    """Without podwall: the attacker's scan finds pods, its router
    advertisement installs a route in a victim, its neighbour solicitations
    carry a payload off the link, the walled pod reaches its node."""
    missing = []
    attacker = lab.pods["bridge-m1"]
    if not attacker.call("scan6", wait=0.8):
        missing.append("the attacker's ff02::1 scan found nothing")
    victim = lab.pods["bridge-o1"]
    attacker.call("ra")
    time.sleep(0.3)
    if not _ra_routes(victim):
        missing.append("the attacker's router advertisement changed nothing")
    for pod in lab.pods.values():  # the advertisement went to every pod of the bridge
        netns.run(pod.netns, ["ip", "-6", "route", "flush", "proto", "ra"])
    marker = shots.shot("NS payload", "bridge-m1", OUTSIDE, "ipv6", True).marker
    attacker.call("ns", to=lab.address(OUTSIDE, "ipv6"), data=marker)
    if not _arrived(lab, OUTSIDE, marker, "arrived"):
        missing.append("an NS with a payload did not reach the outside host")
    if not _poisoned(lab):
        missing.append("ARP and NA claiming another pod's address changed nothing")
    for pod in lab.pods.values():
        netns.run(pod.netns, ["ip", "neigh", "flush", "all"])
    if len(_ipv6_without_address(lab)) < 3:
        missing.append(f"{V4ONLY} pods did not reach their neighbours and node over IPv6")
    if len(_tagged_frames(lab)) < 8:
        missing.append("priority-tagged frames did not reach the victim")
    walled = lab.pods["bridge-e1"]
    if not walled.call("tcp", to=underlay(1, "ipv4"), port=NODE_PORT, timeout=1.0):
        missing.append("the walled pod did not reach its node")
    return [f"without podwall, {what}" for what in missing]


# --- IPv6 link-local and neighbour discovery ---------------------------------------


def _ra_routes(pod: LabPod) -> str:
    """The pod's IPv6 routes learnt from router advertisements."""
    return netns.run(pod.netns, ["ip", "-6", "route", "show", "proto", "ra"]).stdout.strip()


def _link_local_problems(lab: AttackLab) -> list[str]:
    problems = []
    for network in NETWORKS:
        attacker, open_pod = lab.pods[f"{network}-m1"], lab.pods[f"{network}-o1"]
        found = attacker.call("scan6", wait=0.8)
        if found:
            problems.append(f"{network}: the attacker's ff02::1 scan found {found}")
        if not open_pod.call("scan6", wait=0.8):
            problems.append(f"control {network}: the open pod's ff02::1 scan found nothing")
    attacker, trusted = lab.pods["bridge-m1"], lab.pods["bridge-t1"]
    target = lab.pods["bridge-o1"].link_local()
    if attacker.call("tcp", to=target, port=TCP_PORT, timeout=0.5):
        problems.append(f"bridge: the attacker reached TCP {TCP_PORT} of bridge-o1 at {target}")
    if not trusted.call("tcp", to=target, port=TCP_PORT, timeout=1.0):
        problems.append(f"control bridge: bridge-t1 (fe80::/10 allowed) did not reach {target}")
    return problems


def test_link_local_is_subject_to_policy(lab: AttackLab) -> None:
    """An ff02::1 scan and TCP to a pod's fe80:: address from a pod whose
    egress does not allow them find nothing; the same from pods that may."""
    problems = _link_local_problems(lab)
    assert not problems, "\n".join(problems)


def test_router_advertisements_and_neighbour_discovery(lab: AttackLab) -> None:
    """A forged router advertisement changes no pod's routes; neighbour
    solicitations carrying a payload never leave the link; neighbour
    discovery still works for allowed traffic (cold caches)."""
    victims = [lab.pods[key] for key in ("bridge-o1", "bridge-v1", "bridge-t1")]
    for network in NETWORKS:
        lab.pods[f"{network}-m1"].call("ra")
    time.sleep(0.3)
    problems = [f"{pod.key} learnt {_ra_routes(pod)!r}" for pod in victims if _ra_routes(pod)]
    for network in NETWORKS:
        attacker = f"{network}-m1"
        for target in (f"{network}-v2", OUTSIDE):
            marker = shots.shot(f"{network}: NS with payload {attacker} -> {target}", attacker,
                                target, "ipv6", False).marker  # fmt: skip
            lab.pods[attacker].call("ns", to=lab.address(target, "ipv6"), data=marker)
            problems += _arrived(
                lab, target, marker, f"{network}: NS payload {attacker} -> {target}"
            )
    on_link = shots.shot("NS on the link", "bridge-m1", "bridge-v1", "ipv6", True).marker
    lab.pods["bridge-m1"].call("ns", to=lab.address("bridge-v1", "ipv6"), data=on_link)
    if not _arrived(lab, "bridge-v1", on_link, ""):
        problems.append("control: an NS on the bridge did not reach bridge-v1")
    for namespace in [pod.netns for pod in lab.pods.values()] + [
        n.name for n in lab.nodes.values()
    ]:
        netns.run(namespace, ["ip", "-6", "neigh", "flush", "all"], check=False)
    cold = [s for n in NETWORKS for s in shots.controls(n, "ipv6") if s.expected]
    problems += shots.wrong(shots.fire(lab, cold))
    assert not problems, "\n".join(problems)


def _arrived(lab: AttackLab, target: str, marker: str, what: str) -> list[str]:
    time.sleep(0.3)
    found = lab.station(target).call("report")
    return [what or "arrived"] if any(entry["data"] == marker for entry in found) else []


def _mac(pod: LabPod) -> str:
    return netns.run(pod.netns, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()


def _poisoned(lab: AttackLab) -> list[str]:
    """The attacker tells the victim that the trusted pod's addresses are at
    its own MAC (an ARP reply, an unsolicited NA with override); the
    victim's neighbour entries that now point at the attacker."""
    attacker, victim, trusted = (lab.pods[f"bridge-{role}1"] for role in "mvt")
    for family in FAMILIES:  # the victim knows the trusted pod: entries to override
        victim.call("udp", sport=0, to=trusted.ip(family), dport=PORT, data="pw-neighbor")
    time.sleep(1.1)  # past the ARP lock time
    attacker.call("arp", claim=trusted.ip("ipv4"), to=victim.ip("ipv4"), mac=_mac(victim))
    attacker.call("na", claim=trusted.ip("ipv6"), to=victim.ip("ipv6"))
    time.sleep(0.3)
    shown = [
        netns.run(victim.netns, ["ip", "neigh", "show", trusted.ip(family)]).stdout.strip()
        for family in FAMILIES
    ]
    return [entry for entry in shown if _mac(attacker) in entry]


def test_neighbour_spoofing_on_the_bridge(lab: AttackLab) -> None:
    """ARP and neighbour advertisements claiming another pod's address (to
    intercept its traffic) are dropped at the bridge port."""
    if lab.backend != "nftables":
        pytest.skip("the iptables backends cannot check ARP and ND contents (README, Security)")
    poisoned = _poisoned(lab)
    assert not poisoned, f"the victim now sends to the attacker: {poisoned}"


def _ipv6_without_address(lab: AttackLab) -> list[str]:
    """What pods without an IPv6 address reach over IPv6 link-local: pods
    (an ff02::1 scan, TCP to an open pod's fe80:: address) and, with
    ``egress: []``, their node."""
    attacker, open_pod, walled = (lab.pods[f"{V4ONLY}-{role}1"] for role in "moe")
    reached = []
    found = attacker.call("scan6", wait=0.8)
    if found:
        reached.append(f"{attacker.key}'s ff02::1 scan found {found}")
    target = open_pod.link_local()
    if attacker.call("tcp", to=target, port=TCP_PORT, timeout=0.5):
        reached.append(f"{attacker.key} reached TCP {TCP_PORT} of {open_pod.key} at {target}")
    node = lab.node_link_local(1, "cni4")
    if walled.call("tcp", to=node, port=NODE_PORT, timeout=0.5):
        reached.append(f"{walled.key} (egress: []) reached its node at {node}")
    return reached


def test_pods_without_ipv6_send_no_ipv6(lab: AttackLab) -> None:
    """An IPv4-only pod (an IPv4-only cluster) holds a link-local IPv6
    address all the same; it must not reach anyone past its policies with
    it: it sends no IPv6 at all."""
    reached = _ipv6_without_address(lab)
    assert not reached, "\n".join(reached)


def _tagged_frames(lab: AttackLab) -> list[str]:
    """Datagrams to the victim in priority-tagged frames (VLAN ID 0, which a
    receiver takes as untagged: 802.1Q and 802.1ad), from the attacker's own
    and from a trusted pod's address: those that arrived."""
    attacker, victim, trusted = (lab.pods[f"bridge-{role}1"] for role in "mvt")
    sent = {}
    for family in FAMILIES:
        for tpid in (0x8100, 0x88A8):
            for pod in (attacker, trusted):
                what = f"{family} {tpid:#06x} tag, source {pod.key}"
                marker = shots.shot(what, attacker.key, victim.key, family, False).marker
                sent[marker] = what
                attacker.call("tagged", source=pod.ip(family), to=victim.ip(family),
                              mac=_mac(victim), dport=PORT, data=marker, tpid=tpid)  # fmt: skip
    time.sleep(0.4)
    found = {entry["data"] for entry in lab.station(victim.key).call("report")}
    lab.station(victim.key).call("clear")
    return [what for marker, what in sent.items() if marker in found]


def test_priority_tagged_frames_are_filtered(lab: AttackLab) -> None:
    """An 802.1Q/802.1ad frame with VLAN ID 0 crosses the bridge tagged and
    the receiver takes it as untagged: it must meet the same checks."""
    arrived = _tagged_frames(lab)
    assert not arrived, "arrived at bridge-v1:\n" + "\n".join(arrived)


# --- the pod's own node ------------------------------------------------------------


def test_egress_to_the_own_node(lab: AttackLab) -> None:
    """Pod -> its own node goes through the pod's egress chain: blocked under
    ``egress: []`` and for the attacker (pods only), allowed where a policy
    allows the node's address and where no policy selects the pod."""
    checks: dict[str, list[tuple[str, bool]]] = {}
    for network in NETWORKS:
        for family in FAMILIES:
            addresses = (underlay(1, family), lab.pods[f"{network}-m1"].gateway(family))
            cases = [("e1", addresses, False), ("m1", addresses[:1], False),
                     ("t1", addresses[:1], True), ("o1", addresses, True)]  # fmt: skip
            for role, targets, expected in cases:
                checks.setdefault(f"{network}-{role}", []).extend((a, expected) for a in targets)

    def run(key: str) -> list[str]:  # one thread per pod: its station answers in turn
        wrong = []
        for address, expected in checks[key]:
            got = lab.pods[key].call("tcp", to=address, port=NODE_PORT, timeout=0.4)
            if got != expected:
                wrong.append(f"{key} -> its node {address}:{NODE_PORT}: "
                             f"{'open' if got else 'blocked'}")  # fmt: skip
        return wrong

    problems = [line for found in cni_helpers.parallel(run, list(checks)) for line in found]
    assert not problems, "\n".join(problems)


# --- forged ICMP errors ------------------------------------------------------------


def test_forged_icmp_errors_are_not_related_traffic(lab: AttackLab) -> None:
    """An ICMP error quoting a victim's flow is RELATED to it; from a pod it
    still passes the sender's egress and the victim's ingress: the
    attacker's is dropped, the trusted pod's and the outside host's (the
    flow's peer, not a pod) arrive."""
    expected: dict[str, tuple[str, bool]] = {}
    cases = [(network, family) for network in NETWORKS for family in FAMILIES]
    flows = [shots.shot(f"{n} {f}: flow {n}-v1 -> outside", f"{n}-v1", OUTSIDE, f, True,
                        sport=PORT) for n, f in cases]  # fmt: skip
    problems = shots.wrong(shots.fire(lab, flows, settle=0.2))
    assert not problems, problems
    for network, family in cases:
        victim = f"{network}-v1"
        quote = [lab.address(victim, family), lab.address(OUTSIDE, family), PORT, PORT]
        for sender, allowed in ((f"{network}-m1", False), (f"{network}-t1", True),
                                (OUTSIDE, True)):  # fmt: skip
            marker = shots.shot("icmp", sender, victim, family, allowed).marker
            to = lab.address(victim, family)
            lab.station(sender).call("icmp-error", to=to, inner=quote, data=marker)
            expected[marker] = (f"{network} {family}: ICMP error {sender} -> {victim}", allowed)
    time.sleep(shots.SETTLE)
    arrived = {entry["data"] for entries in lab.received().values() for entry in entries
               if entry["via"].startswith("icmp")}  # fmt: skip
    wrong = [f"{'DELIVERED' if m in arrived else 'lost'}: {label}"
             for m, (label, allowed) in expected.items() if (m in arrived) != allowed]  # fmt: skip
    assert not wrong, "\n".join(wrong)


# --- a reused IP (last: it changes the lab's pods) -----------------------------------


def test_a_reused_ip_receives_nothing_of_the_old_flow(lab: AttackLab) -> None:
    """Pod x has an established UDP flow with t1; x goes (CNI DEL), a deny-all
    pod y gets its IPv4 address (CNI ADD): the old flow's datagrams never
    reach y, and the conntrack entry is gone."""
    problems = []
    for network, address in (("bridge", "10.244.1.50"), ("ptp", "10.244.1.150")):
        old = lab.add_pod(1, network, "o", name=f"{network}-x1", ip=address)
        lab.program()
        trusted = f"{network}-t1"
        flow = [
            shots.shot(f"{network}: flow {trusted} -> x1", trusted, old.key, "ipv4", True,
                       sport=FLOW_PORT),
            shots.shot(f"{network}: flow reply x1 -> {trusted}", old.key, trusted, "ipv4", True,
                       sport=PORT, dport=FLOW_PORT),
        ]  # fmt: skip
        problems += shots.wrong(shots.fire(lab, flow, settle=0.3))
        entries = lab.nodes[1].run(["conntrack", "-L", "-d", address], check=False)
        assert str(FLOW_PORT) in entries, f"no conntrack entry for the flow to {address}"
        lab.delete_pod(old.key)
        new = lab.add_pod(1, network, "d", name=f"{network}-y1", ip=address)
        assert new.ip("ipv4") == address, new.ips
        lab.program()
        netns.run(lab.pods[trusted].netns, ["ip", "neigh", "flush", "all"])  # y's new MAC
        late = shots.shot(f"{network}: the old flow {trusted} -> {address} after the reuse",
                          trusted, new.key, "ipv4", False, sport=FLOW_PORT)  # fmt: skip
        problems += shots.wrong(shots.fire(lab, [late]))
        node = shots.shot(f"{network}: control node-1 -> y1", NODE, new.key, "ipv4", True)
        problems += shots.wrong(shots.fire(lab, [node]))
    assert not problems, "\n".join(problems)
