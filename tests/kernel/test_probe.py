"""Probes between pod namespaces: served ports answer, blocked ones do not.

Pods are attached with the reference bridge plugin (dual-stack) through the
runner, once for the module; iptables rules in the node netns do the blocking.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from firewall_lab import netns, probe
from tests.kernel import cni_helpers
from tests.kernel.cni_helpers import Node, Pod

PORTS: dict[probe.Protocol, int] = {"TCP": 8080, "UDP": 5353, "SCTP": 9999}
FAMILIES = ("ipv4", "ipv6")
CASES = list(itertools.product(probe.PROTOCOLS, FAMILIES))
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
POD_SYSCTLS = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}


@pytest.fixture(scope="module")
def pods(tmp_path_factory: Any) -> Iterator[tuple[Node, list[Pod]]]:
    """One node with three dual-stack bridge pods serving every protocol,
    shared by the module (tests that add rules remove them again)."""
    made: list[str] = []
    try:
        made.append(netns.create(netns.unique_name("pwnode"), sysctls=NODE_SYSCTLS))
        node = Node(made[0], str(tmp_path_factory.mktemp("probe")))
        made += [netns.create(netns.unique_name("pwpod"), sysctls=POD_SYSCTLS) for _ in range(3)]
        net = cni_helpers.conflist([node.bridge(["10.91.0.0/24", "fd00:91::/64"])])
        attached = node.add_many(net, made[1:])
        with contextlib.ExitStack() as stack:
            for pod in attached:
                ports = {name.lower(): [port] for name, port in PORTS.items()}
                stack.enter_context(probe.serve(pod.netns, **ports))
            yield node, attached
    finally:
        for name in reversed(made):
            netns.delete(name)


def test_served_ports_answer_other_ports_do_not(pods: tuple[Node, list[Pod]]) -> None:
    _, (a, b, _) = pods
    items = {
        (proto, family, served): probe.Probe(
            a.netns, probe.Target(b.ip(family), PORTS[proto] + (0 if served else 1), proto)
        )
        for proto, family in CASES
        for served in (True, False)
    }
    found = probe.probe_many(items.values())
    got = {key: found[item] for key, item in items.items()}
    assert got == {key: key[2] for key in items}


RULES = {
    "TCP": ["-p", "tcp", "--dport", "8080"],
    "UDP": ["-p", "udp", "--dport", "5353"],
    "SCTP": ["-p", "sctp", "--dport", "9999"],
}


@contextlib.contextmanager
def dropping(
    node: Node, match: list[str], families: tuple[str, ...] = ("iptables-nft", "ip6tables-nft")
) -> Iterator[None]:
    """A ``FORWARD -j DROP`` rule with ``match`` in the node, removed after."""
    for tool in families:
        node.run([tool, "-I", "FORWARD", *match, "-j", "DROP"])
    try:
        yield
    finally:
        for tool in families:
            node.run([tool, "-D", "FORWARD", *match, "-j", "DROP"])


@pytest.mark.parametrize("protocol", probe.PROTOCOLS)
def test_drop_rule_blocks_only_its_protocol(
    pods: tuple[Node, list[Pod]], protocol: probe.Protocol
) -> None:
    node, (a, b, _) = pods
    items = {
        (proto, family): probe.Probe(a.netns, probe.Target(b.ip(family), PORTS[proto], proto))
        for proto, family in CASES
    }
    with dropping(node, RULES[protocol]):
        found = probe.probe_many(items.values())
    got = {key: found[item] for key, item in items.items()}
    assert got == {(proto, family): proto != protocol for proto, family in CASES}


def test_sctp_init_ack_is_tracked_not_invalid(pods: tuple[Node, list[Pod]]) -> None:
    node, (a, b, _) = pods
    with dropping(node, ["-m", "conntrack", "--ctstate", "INVALID"], families=("iptables-nft",)):
        assert probe.probe(a.netns, b.ip(), PORTS["SCTP"], "SCTP")
        table = node.run(["conntrack", "-L", "-p", "sctp"])
    assert f"dst={b.ip()}" in table and "dport=9999" in table and "UNREPLIED" not in table


def test_matrix_of_blocked_pairs_runs_in_parallel(pods: tuple[Node, list[Pod]]) -> None:
    _, attached = pods
    named = {f"p{index}": (pod.netns, pod.ip()) for index, pod in enumerate(attached)}
    started = time.monotonic()
    table = probe.matrix(named, port=4444, protocol="SCTP")  # served nowhere: all time out
    elapsed = time.monotonic() - started
    assert table == {src: {dst: False for dst in named if dst != src} for src in named}
    # 6 pairs x (1 + 1 retry) x 0.4 s would take 4.8 s one by one
    assert elapsed < 3.5, elapsed
