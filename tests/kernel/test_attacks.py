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

from collections.abc import Iterator

import pytest

from tests.conftest import kernel_ready
from tests.kernel import attack_shots as shots
from tests.kernel.attack_lab import BACKENDS, AttackLab, podwall_switched_off, underlay


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttackLab]:
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
    lost = [s.label for s, got in outcome.items() if not got and not _martian(lab, s)]
    arrived = [s.label for s, got in outcome.items() if got and _martian(lab, s)]
    assert not lost, "lost without podwall:\n" + "\n".join(lost)
    assert not arrived, "the kernel let these martians through:\n" + "\n".join(arrived)
    again = shots.run_matrix(lab)  # podwall is back
    assert not shots.wrong(again), "\n".join(shots.wrong(again))
