"""Denied traffic logged and counted by the compiled rules, in both data planes.

A node with two pods on a bridge (through the real CNI chain): ``x/server``
is isolated for ingress by a NetworkPolicy carrying ``podwall.io/log:
"true"`` that admits only ``role=trusted``; ``x/client`` is not trusted.  The
policy is compiled with ``chains.Logging`` and applied with the node's
applier (nftables or iptables-nft).  A denied connection gives exactly one
JSON line naming both pods and the policy (the agent's ``TrafficLog`` reading
NFLOG, resolving tags with the compiled ``log_tags``); the drop counters the
applier reads back rise by exactly the number of datagrams dropped; a flood
is logged at most at the rate limit's burst.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from firewall_lab import netns, probe
from firewall_operator import chains, cluster, compiler, logtags
from firewall_operator.agent import node as agent_node
from firewall_operator.agent import trafficlog
from firewall_plugin import endpoints
from tests.kernel.cni_helpers import Node, Pod, conflist
from tests.kernel.inside import in_netns

GROUP = 4243
BURST = 3


def documents(pods: dict[str, Pod]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": "x"}}]
    for name, pod in pods.items():
        docs.append(
            {
                "kind": "Pod",
                "metadata": {
                    "namespace": "x",
                    "name": name,
                    "uid": f"uid-{pod.attachment.container_id}",
                    "labels": {"app": name},
                },
                "spec": {"nodeName": "node-1"},
                "status": {"podIPs": [{"ip": ip} for ip in pod.ips]},
            }
        )
    docs.append(
        {
            "kind": "NetworkPolicy",
            "metadata": {
                "namespace": "x",
                "name": "trusted-only",
                "annotations": {"podwall.io/log": "true"},
            },
            "spec": {
                "podSelector": {"matchLabels": {"app": "server"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "trusted"}}}]}],
            },
        }
    )
    return docs


@pytest.fixture(params=["nftables", "iptables-nft"])
def lab(request: pytest.FixtureRequest, node_ns: str, tmp_path: Any, make_ns: Any) -> Iterator[Any]:
    backend: str = request.param
    node = Node(node_ns, str(tmp_path))
    net = conflist([node.bridge(["10.88.0.0/24"]), node.podwall(backend=backend)])
    added = node.add_many(net, [make_ns("pwlgs"), make_ns("pwlgc")])
    pods = {"server": added[0], "client": added[1]}
    for pod in added:  # IPv4-only pods: no IPv6 link-local chatter (it would count as spoofed)
        netns.run(pod.netns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
    records = list(endpoints.read_all(node.dir("state")))
    by_netns = {pod.attachment.container_id: name for name, pod in pods.items()}
    for record in records:
        name = by_netns[record.containerID]
        renamed = record.replace(podNamespace="x", podName=name, podUID=f"uid-{record.containerID}")
        endpoints.write(node.dir("state"), renamed)
    logging = chains.Logging(group=GROUP, rate="10/minute", burst=BURST, denied=True)
    snap = cluster.Snapshot.from_documents(documents(pods))
    compiled = compiler.compile_node(snap, endpoints.read_all(node.dir("state")), logging=logging)
    applier = agent_node.make_applier(
        backend, run_dir=node.dir("run"), state_dir=node.dir("state"), log=logging.spec()
    )
    in_netns(node_ns, lambda: applier.apply(compiled.families, endpoints=compiled.endpoints))
    out = io.StringIO()
    log = trafficlog.TrafficLog(
        group=GROUP, node="node-1", output=out, resolve=logtags.resolver(compiled.log_tags)
    )
    log.set_pods(snap.pods)
    in_netns(node_ns, log.start)
    server = probe.serve(pods["server"].netns, tcp=[80], udp=[53], sctp=[])
    try:
        yield node_ns, pods, applier, log, out, compiled
    finally:
        log.stop()
        server.stop()


def _lines(log: trafficlog.TrafficLog, out: io.StringIO, at_least: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while log.lines < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # nothing more may come
    return [json.loads(text) for text in out.getvalue().splitlines()]


def _send_udp(pod: Pod, target: str, count: int) -> None:
    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(count):
                sock.sendto(b"x", (target, 53))

    in_netns(pod.netns, flood)


def _drops(node_ns: str, applier: Any, compiled: compiler.CompiledNode) -> int:
    readings = in_netns(node_ns, applier.read_counters)
    return sum(
        packets
        for tag, (packets, _) in readings.items()
        if compiled.log_tags[tag].policy == "NetworkPolicy x/trusted-only"
    )


def test_a_denied_connection_is_logged_once_and_counted(lab: Any) -> None:
    node_ns, pods, applier, log, out, compiled = lab
    server_ip = pods["server"].ip()
    before = _drops(node_ns, applier, compiled)
    assert not probe.probe(pods["client"].netns, server_ip, 80, "TCP", timeout=0.5, retries=0)
    lines = [entry for entry in _lines(log, out, 1) if entry["tier"] == "netpol"]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["verdict"] == "deny" and line["direction"] == "ingress", line
    assert line["tier"] == "netpol" and "NetworkPolicy x/trusted-only" in line["policy"], line
    assert line["source"]["pod"] == "x/client" and line["destination"]["pod"] == "x/server", line
    assert _drops(node_ns, applier, compiled) - before >= 1

    counted = _drops(node_ns, applier, compiled)
    _send_udp(pods["client"], server_ip, 20)
    time.sleep(0.3)
    assert _drops(node_ns, applier, compiled) - counted == 20
    flood = [entry for entry in _lines(log, out, 2) if entry.get("protocol") == "UDP"]
    assert 1 <= len(flood) <= BURST, flood


def _forged_udp(pod: Pod, source: str, target: str, count: int) -> None:
    """UDP datagrams with a forged IPv4 source, from a raw socket in ``pod``."""

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            for number in range(count):
                payload = b"forged"
                udp = (40000 + number).to_bytes(2, "big") + (53).to_bytes(2, "big")
                udp += (8 + len(payload)).to_bytes(2, "big") + b"\0\0" + payload
                header = bytes([0x45, 0]) + (20 + len(udp)).to_bytes(2, "big") + bytes(4)
                header += bytes([64, 17]) + b"\0\0" + socket.inet_aton(source)
                header += socket.inet_aton(target)
                sock.sendto(header + udp, (target, 0))

    in_netns(pod.netns, send)


def _spoofing_drops(node_ns: str, applier: Any, compiled: compiler.CompiledNode) -> int:
    readings = in_netns(node_ns, applier.read_counters)
    return sum(
        packets
        for tag, (packets, _) in readings.items()
        if tag in compiled.log_tags and compiled.log_tags[tag].tier == "spoofing"
    )


def test_forged_sources_are_dropped_counted_and_logged(lab: Any) -> None:
    node_ns, pods, applier, log, out, compiled = lab
    before = _spoofing_drops(node_ns, applier, compiled)
    _forged_udp(pods["client"], "10.88.0.250", pods["server"].ip(), 4)
    time.sleep(0.3)
    assert _spoofing_drops(node_ns, applier, compiled) - before == 4
    lines = [entry for entry in _lines(log, out, 1) if entry["tier"] == "spoofing"]
    assert 1 <= len(lines) <= BURST, lines
    assert lines[0]["policy"] == "anti-spoofing" and lines[0]["source"]["ip"] == "10.88.0.250"
