"""The traffic log's NFLOG reader against the real kernel, with hand-written rules.

Two throwaway namespaces joined by a veth: a client (10.77.0.1) and a
"node" (10.77.0.2) whose INPUT logs with ``NFLOG`` (iptables) or ``log
group`` (nft) and then drops TCP/UDP port 80; port 81 stays open.  The
reader runs in the node namespace.  A denied connection gives exactly one
JSON line naming what the resolver says; a flood of 10,000 packets through a
kernel rate limit gives at most the limit's lines; with the reader stopped
the packets are dropped all the same (the verdict never depends on it).
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from firewall_lab import netns
from firewall_operator import cluster, logtags
from firewall_operator.agent import trafficlog
from tests.kernel.inside import in_netns

CLIENT, NODE = "10.77.0.1", "10.77.0.2"
GROUP = 4242
TAG = "pw:test0denied"
MEANING = logtags.LogTag("ingress", "deny", "netpol", "NetworkPolicy x/deny", "", "x/server")
BURST = 5


def iptables_rules(limit: bool) -> list[list[str]]:
    rate = ["-m", "limit", "--limit", "10/minute", "--limit-burst", str(BURST)] if limit else []
    log = ["-j", "NFLOG", "--nflog-group", str(GROUP), "--nflog-prefix", TAG]
    return [
        ["iptables", "-A", "INPUT", "-p", proto, "--dport", "80", *rate, *log]
        for proto in ("tcp", "udp")
    ] + [
        ["iptables", "-A", "INPUT", "-p", proto, "--dport", "80", "-j", "DROP"]
        for proto in ("tcp", "udp")
    ]


def nft_rules(limit: bool) -> str:
    rate = f"limit rate 10/minute burst {BURST} packets " if limit else ""
    return (
        "table inet pwtest {\n chain input {\n  type filter hook input priority 0;\n"
        f'  meta l4proto {{ tcp, udp }} th dport 80 {rate}log group {GROUP} prefix "{TAG}"\n'
        "  meta l4proto { tcp, udp } th dport 80 drop\n }\n}\n"
    )


@pytest.fixture
def pair(make_ns: Any) -> tuple[str, str]:
    client, node = make_ns("pwlogc"), make_ns("pwlogn")
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            "pwlc",
            "netns",
            client,
            "type",
            "veth",
            "peer",
            "name",
            "pwln",
            "netns",
            node,
        ],
        check=True,
    )
    for name, link, ip in ((client, "pwlc", CLIENT), (node, "pwln", NODE)):
        netns.run(name, ["ip", "addr", "add", f"{ip}/24", "dev", link])
        netns.run(name, ["ip", "link", "set", link, "up"])
        netns.run(name, ["ip", "link", "set", "lo", "up"])
    return client, node


def program(node: str, flavour: str, *, limit: bool) -> None:
    if flavour == "iptables":
        for rule in iptables_rules(limit):
            netns.run(node, rule)
    else:
        netns.run(node, ["nft", "-f", "-"], input=nft_rules(limit))


class Reader:
    """A TrafficLog in the node namespace writing into memory."""

    def __init__(self, node: str) -> None:
        self.out = io.StringIO()
        self.log = trafficlog.TrafficLog(
            group=GROUP, node="node-1", output=self.out, resolve={TAG: MEANING}.get
        )
        self.log.set_pods([cluster.Pod("x", "client", ips=(CLIENT,))])
        in_netns(node, self.log.start)

    def lines(self, *, at_least: int, settle: float = 0.5) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while self.log.lines < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle)  # nothing more may come
        return [json.loads(text) for text in self.out.getvalue().splitlines()]


@pytest.fixture
def reader_factory(pair: tuple[str, str]) -> Iterator[Callable[[], Reader]]:
    made: list[Reader] = []

    def make() -> Reader:
        made.append(Reader(pair[1]))
        return made[-1]

    yield make
    for reader in made:
        reader.log.stop()


def tcp_attempt(client: str, port: int) -> bool:
    """One connection attempt that sends a single SYN (timeout < the 1 s RTO)."""

    def attempt() -> bool:
        try:
            socket.create_connection((NODE, port), timeout=0.5).close()
            return True
        except OSError:
            return False

    return in_netns(client, attempt)


def udp_flood(client: str, port: int, count: int) -> None:
    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(count):
                sock.sendto(b"x", (NODE, port))

    in_netns(client, flood)


def udp_received(node: str, port: int, send: Callable[[], None]) -> int:
    """Datagrams a socket bound in the node namespace gets while ``send`` runs."""
    sock = in_netns(node, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with sock:
        sock.bind(("0.0.0.0", port))
        sock.settimeout(0.3)
        send()
        got = 0
        while True:
            try:
                sock.recv(64)
            except TimeoutError:
                return got
            got += 1


FLAVOURS = pytest.mark.parametrize("flavour", ["iptables", "nft"])


@FLAVOURS
def test_denied_connection_gives_one_line(
    pair: tuple[str, str], reader_factory: Callable[[], Reader], flavour: str
) -> None:
    client, node = pair
    program(node, flavour, limit=False)
    reader = reader_factory()
    server = in_netns(node, lambda: socket.create_server(("0.0.0.0", 81)))
    with server:
        assert tcp_attempt(client, 81)  # not logged: another port
        assert not tcp_attempt(client, 80)
    lines = reader.lines(at_least=1)
    assert len(lines) == 1, lines
    found = lines[0]
    assert found["tag"] == TAG and found["node"] == "node-1"
    assert (found["direction"], found["verdict"], found["tier"]) == ("ingress", "deny", "netpol")
    assert (found["policy"], found["pod"]) == ("NetworkPolicy x/deny", "x/server")
    assert found["source"]["ip"] == CLIENT and found["source"]["pod"] == "x/client"
    assert found["destination"] == {"ip": NODE, "port": 80, "pod": None}
    assert (found["protocol"], found["family"]) == ("TCP", "ipv4")


@FLAVOURS
def test_flood_is_limited_in_the_kernel(
    pair: tuple[str, str], reader_factory: Callable[[], Reader], flavour: str
) -> None:
    client, node = pair
    program(node, flavour, limit=True)
    reader = reader_factory()
    started = time.monotonic()
    udp_flood(client, 80, 10_000)
    lines = reader.lines(at_least=BURST)
    refill = int((time.monotonic() - started) / 6) + 1  # 10/minute: one more every 6 s
    assert BURST <= len(lines) <= BURST + refill
    assert reader.log.dropped == 0 and reader.log.overruns == 0


@FLAVOURS
def test_packets_are_dropped_without_a_reader(
    pair: tuple[str, str], reader_factory: Callable[[], Reader], flavour: str
) -> None:
    client, node = pair
    program(node, flavour, limit=False)
    reader = reader_factory()
    reader.log.stop()  # the agent is down: nobody reads the group
    assert udp_received(node, 80, lambda: udp_flood(client, 80, 200)) == 0
    assert udp_received(node, 81, lambda: udp_flood(client, 81, 20)) == 20
    assert not tcp_attempt(client, 80)
    assert reader.out.getvalue() == ""


def test_foreign_prefixes_are_skipped(
    pair: tuple[str, str], reader_factory: Callable[[], Reader]
) -> None:
    client, node = pair
    netns.run(
        node,
        [
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "82",
            "-j",
            "NFLOG",
            "--nflog-group",
            str(GROUP),
            "--nflog-prefix",
            "someone-else",
        ],
    )
    reader = reader_factory()
    udp_flood(client, 82, 3)
    deadline = time.monotonic() + 5
    while reader.log.foreign < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (reader.log.foreign, reader.lines(at_least=0, settle=0.2)) == (3, [])


class NftCounters:
    """A test's ``counters.CounterSource``: the named counters of a table."""

    def __init__(self, node: str) -> None:
        self.node = node

    def read_counters(self) -> dict[str, tuple[int, int]]:
        out = netns.run(self.node, ["nft", "-j", "list", "counters", "table", "inet", "pwtest"])
        found = {}
        for item in json.loads(out.stdout)["nftables"]:
            if "counter" in item:
                counter = item["counter"]
                tag = logtags.tag_of_counter(counter["name"])
                found[tag] = (counter["packets"], counter["bytes"])
        return found


def test_drop_counters_rise_by_the_dropped_packets(pair: tuple[str, str]) -> None:
    from prometheus_client import CollectorRegistry

    from firewall_operator.agent import counters

    client, node = pair
    netns.run(
        node,
        ["nft", "-f", "-"],
        input=(
            "table inet pwtest {\n"
            f" counter {logtags.counter_name(TAG)} {{}}\n"
            " chain input {\n  type filter hook input priority 0;\n"
            f"  udp dport 80 counter name {logtags.counter_name(TAG)} drop\n }}\n}}\n"
        ),
    )
    drops = counters.DropCounters(NftCounters(node), lambda: {TAG: MEANING}.get)
    registry = CollectorRegistry()
    registry.register(drops)
    labels = {"tier": "netpol", "policy": MEANING.policy, "rule": "", "direction": "ingress"}

    def value(name: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    before = value("podwall_dropped_packets_total")
    assert udp_received(node, 80, lambda: udp_flood(client, 80, 37)) == 0
    assert value("podwall_dropped_packets_total") - before == 37
    assert value("podwall_dropped_bytes_total") == 37 * (20 + 8 + 1)  # IPv4 + UDP + 1 byte
