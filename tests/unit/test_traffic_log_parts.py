"""The traffic log and drop counters without a kernel: tags, netlink parsing,
JSON lines, the bounded queue, monotonic counters and the JSON log format."""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import socket
import struct

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from firewall_operator import cluster, logtags
from firewall_operator.agent import counters, logformat, nflog, trafficlog

DENY = logtags.LogTag(
    "ingress", "deny", "netpol", "NetworkPolicy api/default-deny", "", "api/orders"
)


def test_tags_are_stable_short_and_distinct() -> None:
    tag = logtags.tag_for(DENY)
    assert tag == logtags.tag_for(DENY) and logtags.is_podwall(tag)
    assert len(tag) == 13 and tag.isascii() and " " not in tag and '"' not in tag
    other = logtags.LogTag("egress", "deny", "netpol", "NetworkPolicy api/default-deny")
    assert logtags.tag_for(other) != tag
    assert logtags.resolver({tag: DENY})(tag) == DENY and logtags.no_tags(tag) is None


def ipv4_tcp(src: str, dst: str, sport: int, dport: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton(src), socket.inet_aton(dst)
    )
    return header + struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 2, 0, 0, 0)


def ipv6_udp(src: str, dst: str, sport: int, dport: int) -> bytes:
    header = struct.pack("!IHBB", 6 << 28, 8, 17, 64)
    header += ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    return header + struct.pack("!HHHH", sport, dport, 8, 0)


def attr(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def packet_message(payload: bytes, prefix: str, *, stamp: tuple[int, int] | None) -> bytes:
    body = struct.pack("!BBH", socket.AF_INET, 0, 7)
    body += attr(nflog.ATTR_PREFIX, prefix.encode() + b"\0")
    body += attr(nflog.ATTR_INDEV, struct.pack("!I", 3))
    if stamp is not None:
        body += attr(nflog.ATTR_TIMESTAMP, struct.pack("!QQ", *stamp))
    body += attr(nflog.ATTR_PAYLOAD, payload)
    return struct.pack("=IHHII", 16 + len(body), nflog.MSG_PACKET, 0, 0, 0) + body


def test_packet_messages_parse() -> None:
    data = packet_message(
        ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 80), "pw:abc", stamp=(100, 250000)
    )
    data += packet_message(ipv6_udp("fd00::1", "fd00::2", 5353, 53), "x", stamp=None)
    found = [nflog.parse_packet(body) for kind, body in nflog.messages(data)]
    assert [kind for kind, _ in nflog.messages(data)] == [nflog.MSG_PACKET] * 2
    first, second = found
    assert (first.prefix, first.time, first.indev) == ("pw:abc", 100.25, 3)
    assert (first.family, first.source, first.destination, first.protocol) == (
        "ipv4",
        "10.0.0.1",
        "10.0.0.2",
        "TCP",
    )
    assert (first.source_port, first.destination_port) == (40000, 80)
    assert (second.family, second.destination, second.protocol, second.destination_port) == (
        "ipv6",
        "fd00::2",
        "UDP",
        53,
    )


def test_config_message_layout() -> None:
    message = nflog.config_message(20567, b"", seq=9)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", message)
    assert (length, kind, flags, seq) == (20, nflog.MSG_CONFIG, 5, 9)
    assert struct.unpack_from("!BBH", message, 16) == (0, 0, 20567)


def test_icmp_and_short_payloads() -> None:
    icmp = bytearray(ipv4_tcp("10.0.0.1", "10.0.0.2", 0, 0))
    icmp[9] = 1
    assert nflog.parse_ip(bytes(icmp))[3:] == ("ICMP", None, None)
    assert nflog.parse_ip(b"\x45\x00") == ("", "", "", "", None, None)


def logged(prefix: str = "pw:abc") -> nflog.LoggedPacket:
    return nflog.LoggedPacket(
        prefix,
        1.5,
        family="ipv4",
        source="10.0.0.1",
        destination="10.0.0.2",
        protocol="TCP",
        source_port=4000,
        destination_port=80,
    )


def test_line_names_pods_and_the_resolved_rule() -> None:
    pods = trafficlog.pod_directory(
        [
            cluster.Pod("web", "frontend", ips=("10.0.0.1",)),
            cluster.Pod("kube-system", "proxy", ips=("10.0.0.9",), host_network=True),
        ]
    )
    assert pods == {"10.0.0.1": "web/frontend"}
    found = trafficlog.line(logged(), DENY, node="n1", pods=pods)
    assert found["time"] == "1970-01-01T00:00:01.500000Z"
    assert (found["direction"], found["verdict"], found["tier"]) == ("ingress", "deny", "netpol")
    assert (found["policy"], found["rule"], found["pod"]) == (DENY.policy, None, "api/orders")
    assert found["source"] == {"ip": "10.0.0.1", "port": 4000, "pod": "web/frontend"}
    assert found["destination"] == {"ip": "10.0.0.2", "port": 80, "pod": None}
    unknown = trafficlog.line(logged(), None, node="n1", pods={})
    assert (unknown["tag"], unknown["policy"], unknown["verdict"]) == ("pw:abc", None, None)


def test_a_full_queue_drops_lines_instead_of_waiting() -> None:
    log = trafficlog.TrafficLog(group=1, node="n1", output=io.StringIO(), queue_size=2)
    for _ in range(5):
        log.handle(logged())  # no writer thread: the queue fills
    log.handle(logged("someone-else"))
    assert (log.dropped, log.foreign) == (3, 1)


class Source:
    def __init__(self) -> None:
        self.readings: dict[str, tuple[int, int]] = {}

    def read_counters(self) -> dict[str, tuple[int, int]]:
        return dict(self.readings)


def test_drop_counters_are_monotonic_per_policy_and_rule() -> None:
    allow = logtags.LogTag("egress", "allow", "admin", "FirewallRule dns", "allow-dns", "x/a")
    other_pod = logtags.LogTag("ingress", "deny", "netpol", DENY.policy, "", "api/other")
    meaning = {"pw:a": DENY, "pw:b": other_pod, "pw:c": allow}
    source = Source()
    drops = counters.DropCounters(source, lambda: meaning.get)
    registry = CollectorRegistry()
    registry.register(drops)
    source.readings = {"pw:a": (3, 180), "pw:b": (2, 120), "pw:c": (50, 5000), "pw:zz": (9, 9)}
    drops.read()
    source.readings = {"pw:a": (1, 60), "pw:b": (4, 240)}  # pw:a's rule was rebuilt
    text = generate_latest(registry).decode()
    labels = 'direction="ingress",policy="NetworkPolicy api/default-deny",rule="",tier="netpol"'
    assert f"podwall_dropped_packets_total{{{labels}}} 8.0" in text  # 3+2, then +1 +2
    assert f"podwall_dropped_bytes_total{{{labels}}} 480.0" in text
    assert "allow-dns" not in text and "pw:zz" not in text


def test_a_failing_source_does_not_break_the_scrape() -> None:
    class Broken:
        def read_counters(self) -> dict[str, tuple[int, int]]:
            raise OSError("netlink went away")

    drops = counters.DropCounters(Broken(), lambda: logtags.no_tags)
    assert [family.name for family in drops.collect()] == [
        "podwall_dropped_packets",
        "podwall_dropped_bytes",
    ]
    assert drops.errors == 1


def test_json_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    logformat.setup("json", verbose=False)
    try:
        logging.getLogger("podwall.test").warning("sync %d failed", 3)
    finally:
        logformat.setup("text", verbose=False)
    found = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (found["level"], found["logger"], found["message"]) == (
        "warning",
        "podwall.test",
        "sync 3 failed",
    )
    assert found["time"].endswith("Z")


def netpol_doc(annotations: dict[str, str]) -> dict[str, object]:
    return {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "x", "name": "deny", "annotations": annotations},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }


def test_the_log_annotation_reaches_the_plan() -> None:
    from firewall_operator import netpol
    from firewall_operator.planner import Planner

    assert netpol.parse(netpol_doc({"podwall.io/log": "true"})).log is True
    odd = netpol.parse(netpol_doc({"podwall.io/log": "yes"}))
    assert (odd.log, odd.valid) == (False, True)
    assert "not true or false" in odd.problems[0].reason
    pod = {"kind": "Pod", "metadata": {"namespace": "x", "name": "a"}}
    for marks, wanted in (({"podwall.io/log": "true"}, True), ({}, False)):
        snap = cluster.Snapshot.from_documents([pod, netpol_doc(marks)])
        planner = Planner(snap)
        assert planner.plan_for(snap.pods[0], "ingress").netpol_log is wanted
        assert planner.plan_for(snap.pods[0], "egress").netpol_log is False  # not isolated


def test_counter_names_round_trip() -> None:
    tag = logtags.tag_for(DENY)
    name = logtags.counter_name(tag)
    assert ":" not in name and name.startswith("pw_")
    assert logtags.tag_of_counter(name) == tag and logtags.tag_of_counter("other") == "other"


def test_a_backend_with_read_counters_is_a_counter_source() -> None:
    assert isinstance(Source(), counters.CounterSource)
    assert not isinstance(object(), counters.CounterSource)
