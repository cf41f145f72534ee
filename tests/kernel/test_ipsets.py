"""ipsets.apply against the real kernel, in a fresh node namespace each.

Sets are replaced by filling a ``-T`` set and swapping it in: a ``-m set``
rule keeps matching through replacements, a failed restore leaves the old
sets and no temporary set behind, and a set whose type or family changes is
rebuilt when nothing uses it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from firewall_lab import netns
from firewall_plugin import ipsets, model
from firewall_plugin.errors import PodwallError

NAME = "PODWALL-S-TEST"

CASES = {
    "hash-net-nomatch": model.IPSet(
        NAME, "hash:net", "ipv4", ("10.0.0.0/8", "10.1.0.0/16 nomatch", "192.168.1.7")
    ),
    "hash-ip": model.IPSet(NAME, "hash:ip", "ipv4", ("10.0.0.1", "10.0.0.2")),
    "hash-ip-port": model.IPSet(
        NAME, "hash:ip,port", "ipv4", ("10.0.0.5,tcp:8080", "10.0.0.5,udp:53", "10.0.0.6,sctp:9")
    ),
    "hash-net-port": model.IPSet(NAME, "hash:net,port", "ipv4", ("10.2.0.0/16,tcp:443",)),
    "ipv6-hash-net": model.IPSet(
        NAME, "hash:net", "ipv6", ("fd00::/64", "fd00::/80 nomatch", "fd01::5")
    ),
    "ipv6-hash-ip-port": model.IPSet(NAME, "hash:ip,port", "ipv6", ("fd00::5,tcp:8080",)),
    "empty": model.IPSet(NAME, "hash:net", "ipv4", ()),
}


def _call(ns: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in ``ns``; a PodwallError comes back as its class name."""

    def guarded() -> Any:
        try:
            return fn(*args)
        except PodwallError as exc:
            return f"{type(exc).__name__}: {exc}"

    return netns.call(ns, guarded)


def _apply_and_read(replace: list[model.IPSet], destroy: list[str]) -> dict[str, list[str]]:
    ipsets.apply(replace=replace, destroy=destroy)
    return {name: ipsets.read_entries(name) for name in ipsets.list_names()}


@pytest.mark.parametrize("ipset", CASES.values(), ids=CASES.keys())
def test_create_then_replace_reads_back_entries(node_ns: str, ipset: model.IPSet) -> None:
    assert _call(node_ns, _apply_and_read, [ipset], []) == {NAME: sorted(ipset.entries)}
    again = model.IPSet(ipset.name, ipset.kind, ipset.family, ipset.entries[:1])
    assert _call(node_ns, _apply_and_read, [again], []) == {NAME: sorted(again.entries)}


def test_destroy_ignores_missing_names(node_ns: str) -> None:
    sets = [model.IPSet(f"PODWALL-S-{i}", "hash:ip", "ipv4", ("10.0.0.1",)) for i in range(2)]
    _call(node_ns, _apply_and_read, sets, [])
    found = _call(node_ns, _apply_and_read, [], ["PODWALL-S-0", "PODWALL-S-NOPE"])
    assert found == {"PODWALL-S-1": ["10.0.0.1"]}


CHANGES = {
    "ip-to-net": model.IPSet(NAME, "hash:net", "ipv4", ("10.9.0.0/16",)),
    "ipv4-to-ipv6": model.IPSet(NAME, "hash:ip", "ipv6", ("fd00::9",)),
    "ip-to-ip-port": model.IPSet(NAME, "hash:ip,port", "ipv4", ("10.0.0.9,tcp:80",)),
}


@pytest.mark.parametrize("changed", CHANGES.values(), ids=CHANGES.keys())
def test_set_whose_type_or_family_changes_is_rebuilt(node_ns: str, changed: model.IPSet) -> None:
    _call(node_ns, _apply_and_read, [model.IPSet(NAME, "hash:ip", "ipv4", ("10.0.0.1",))], [])
    assert _call(node_ns, _apply_and_read, [changed], []) == {NAME: list(changed.entries)}
    header = _call(node_ns, ipsets.read_headers)[NAME]
    assert header.kind == changed.kind
    assert header.family == ("inet6" if changed.family == "ipv6" else "inet")


def test_type_change_of_a_set_in_use_fails_and_keeps_it(node_ns: str) -> None:
    old = model.IPSet(NAME, "hash:ip", "ipv4", ("10.0.0.1",))
    _call(node_ns, _apply_and_read, [old], [])
    netns.run(node_ns, ["iptables-legacy", "-A", "FORWARD", "-m", "set", "--match-set",
                        NAME, "dst", "-j", "DROP"])  # fmt: skip
    result = _call(node_ns, _apply_and_read, [CHANGES["ip-to-net"]], [])
    assert isinstance(result, str) and result.startswith("BackendError"), result
    assert _call(node_ns, _apply_and_read, [], []) == {NAME: ["10.0.0.1"]}


def test_failed_restore_keeps_old_sets_and_leaves_no_temp(node_ns: str) -> None:
    first = model.IPSet("PODWALL-S-A", "hash:net", "ipv4", ("10.0.0.0/8",))
    second = model.IPSet("PODWALL-S-B", "hash:ip", "ipv4", ("10.0.0.2",))
    _call(node_ns, _apply_and_read, [first, second], [])
    new_first = model.IPSet(first.name, "hash:net", "ipv4", ("10.3.0.0/16",))
    bad_second = model.IPSet(second.name, "hash:ip", "ipv4", ("10.0.0.3", "not-an-ip"))
    brand_new = model.IPSet("PODWALL-S-C", "hash:ip", "ipv4", ("10.0.0.4",))
    result = _call(node_ns, _apply_and_read, [new_first, brand_new, bad_second], [])
    assert isinstance(result, str) and result.startswith("BackendError"), result
    after = _call(node_ns, _apply_and_read, [], [])
    assert after == {first.name: ["10.0.0.0/8"], second.name: ["10.0.0.2"]}
    listed = netns.run(node_ns, ["ipset", "list", "-n"]).stdout.split()
    assert not [name for name in listed if name.endswith("-T")]


def test_leftover_temp_set_of_another_type_is_replaced(node_ns: str) -> None:
    netns.run(node_ns, ["ipset", "create", f"{NAME}-T", "hash:ip,port"])
    ipset = model.IPSet(NAME, "hash:net", "ipv4", ("10.5.0.0/16",))
    assert _call(node_ns, _apply_and_read, [ipset], []) == {NAME: ["10.5.0.0/16"]}


TARGET = "10.0.0.5"


def _connect_refused(listener: socket.socket) -> bool:
    """Connect to ``listener``: True when refused, False when it got through."""
    with socket.socket() as client:
        client.settimeout(2)
        try:
            client.connect(listener.getsockname())
        except ConnectionRefusedError:
            return True
    listener.accept()[0].close()
    return False


def _swap_under_traffic(rounds: int) -> tuple[int, int, bool]:
    """Replace the set ``rounds`` times (always holding TARGET) while
    connecting to TARGET; return (connections, ones that got through, and
    whether a connection passes once TARGET leaves the set)."""
    listener = socket.create_server((TARGET, 0), backlog=64)
    entries = ["10.0.0.5"]
    done = threading.Event()

    def replace_loop() -> None:
        for i in range(rounds):
            ipset = model.IPSet(NAME, "hash:ip", "ipv4", (*entries, f"10.7.{i // 250}.{i % 250}"))
            ipsets.apply(replace=[ipset])
        done.set()

    worker = threading.Thread(target=replace_loop)
    worker.start()
    tries = passed = 0
    while not done.is_set():
        tries += 1
        passed += not _connect_refused(listener)
    worker.join()
    ipsets.apply(replace=[model.IPSet(NAME, "hash:ip", "ipv4", ("10.0.0.6",))])
    opened = not _connect_refused(listener)
    listener.close()
    return tries, passed, opened


def test_rule_keeps_matching_while_the_set_is_replaced(node_ns: str) -> None:
    netns.run(node_ns, ["ip", "addr", "add", f"{TARGET}/32", "dev", "lo"])
    _call(node_ns, _apply_and_read, [model.IPSet(NAME, "hash:ip", "ipv4", (TARGET,))], [])
    netns.run(node_ns, ["iptables-legacy", "-A", "OUTPUT", "-p", "tcp", "--syn", "-m", "set",
                        "--match-set", NAME, "dst", "-j", "REJECT", "--reject-with",
                        "tcp-reset"])  # fmt: skip
    tries, passed, opened = netns.call(node_ns, _swap_under_traffic, 40)
    assert tries > 10
    assert passed == 0
    assert opened
