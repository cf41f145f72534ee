"""The nftables bridge forward chain: flooded frames reach only open pods.

Three pods on one bridge: a sender ``s``, ``c`` (a NetworkPolicy selects it:
ingress only from ``s``, so it is isolated) and ``o`` (no policy: open).  A
broadcast and a multicast datagram from ``s`` reach ``o`` and never ``c``;
a unicast datagram (after ARP, which must pass) reaches ``c``.  The bridge
forward chain accepts what is neither broadcast nor multicast first (the
cheap test every unicast frame takes), so this pins both of its halves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from firewall_lab import netns
from firewall_operator import cluster, compiler
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import endpoints

PODS = {"s": "10.71.0.2", "c": "10.71.0.3", "o": "10.71.0.4"}
PORT = 5400
RECEIVER = f"""
import socket, sys
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("0.0.0.0", {PORT}))
r.settimeout(1.5); print("ready", flush=True); got = []
while True:
    try: got.append(r.recv(64).decode())
    except TimeoutError: break
print(" ".join(sorted(got)))
"""
SENDER = f"""
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for target, word in (("10.71.0.255", "broadcast"), ("224.0.0.1", "multicast")):
    u.sendto(word.encode(), (target, {PORT}))
for address in sys.argv[1:]:
    u.sendto(b"unicast", (address, {PORT}))
"""


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": "x", "labels": {}}}]
    for name, ip in PODS.items():
        meta = {"namespace": "x", "name": name, "uid": f"u-{name}", "labels": {"app": name}}
        docs.append({"kind": "Pod", "metadata": meta, "spec": {"nodeName": "n"},
                     "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})  # fmt: skip
    docs.append({
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "x", "name": "c-from-s"},
        "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "s"}}}]}]},
    })  # fmt: skip
    return docs


def records() -> list[endpoints.EndpointRecord]:
    return [
        endpoints.EndpointRecord.make(
            container_id=f"c-{name}", ifname="eth0", podNamespace="x", podName=name,
            podUID=f"u-{name}", ips=(f"{ip}/24",), hostInterface=f"vf{name}", bridge="br0",
        )
        for name, ip in PODS.items()
    ]  # fmt: skip


def program(workdir: str) -> dict[str, bool]:
    node = compiler.compile_node(cluster.Snapshot.from_documents(documents()), records())
    NftApplier(run_dir=f"{workdir}/run", state_dir=f"{workdir}/state").apply(
        node.families, endpoints=node.endpoints
    )
    return {e.pod.split("/")[1]: e.ingress_open for e in node.endpoints}


def wire(node: str, pods: dict[str, str]) -> None:
    netns.run(node, ["ip", "link", "add", "br0", "type", "bridge"])
    netns.run(node, ["ip", "link", "set", "br0", "up"])
    netns.run(node, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])
    for name, pod in pods.items():
        netns.run(node, ["ip", "link", "add", f"vf{name}", "type", "veth", "peer", "eth0",
                         "netns", pod])  # fmt: skip
        netns.run(node, ["ip", "link", "set", f"vf{name}", "master", "br0", "up"])
        netns.run(pod, ["ip", "addr", "add", f"{PODS[name]}/24", "dev", "eth0"])
        netns.run(pod, ["ip", "link", "set", "eth0", "up"])
        netns.run(pod, ["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"])


def received(pods: dict[str, str], unicast_to: list[str]) -> dict[str, str]:
    """What c and o receive of the sender's broadcast, multicast and unicast."""
    argv = ["ip", "netns", "exec", "", sys.executable, "-c", RECEIVER]
    listeners = {
        name: subprocess.Popen(
            [*argv[:3], pods[name], *argv[4:]], stdout=subprocess.PIPE, text=True
        )
        for name in ("c", "o")
    }
    try:
        for listener in listeners.values():
            assert listener.stdout is not None
            listener.stdout.readline()
        netns.run(pods["s"], [sys.executable, "-c", SENDER, *unicast_to])
        return {name: listener.communicate(timeout=10)[0].strip()
                for name, listener in listeners.items()}  # fmt: skip
    finally:
        for listener in listeners.values():
            listener.kill()
            listener.wait()


def test_flooded_frames_reach_only_open_pods(node_ns: str, make_ns: Any, tmp_path: Path) -> None:
    pods = {name: make_ns("pwfl") for name in PODS}
    wire(node_ns, pods)
    unicast = [PODS["c"], PODS["o"]]
    without = received(pods, unicast)
    assert without == {"c": "broadcast multicast unicast", "o": "broadcast multicast unicast"}, (
        f"without podwall every pod hears everything: {without}"
    )
    opened = netns.call(node_ns, program, str(tmp_path))
    assert opened == {"s": True, "c": False, "o": True}
    got = received(pods, unicast)
    assert got["c"] == "unicast", f"isolated pod c heard a flooded frame: {got['c']!r}"
    assert got["o"] == "broadcast multicast unicast", f"open pod o missed some: {got['o']!r}"
