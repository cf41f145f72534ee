"""Connect+echo+close latency between two pods on a bridge, for the benchmarks.

``Path.create(v4_client, v4_server)`` builds a node namespace with a bridge
and two pod namespaces joined to it by veth pairs (addresses given, /9);
``measure(connections)`` runs a pinned echo server (CPU 1) and a pinned client
(CPU 0) and returns seconds per connection.  The caller programs (or not) the
node's rules in between.  ``delete`` removes all three namespaces.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

from firewall_lab import netns

PORT = 7000
SERVER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen(512); print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(c.recv(64)); c.close()
"""
CLIENT = f"""
import socket, sys, time
host, count = sys.argv[1], int(sys.argv[2])
for _ in range(50):
    c = socket.create_connection((host, {PORT}), timeout=2); c.sendall(b"x"); c.recv(64); c.close()
start = time.perf_counter()
for _ in range(count):
    c = socket.create_connection((host, {PORT}), timeout=2); c.sendall(b"x"); c.recv(64); c.close()
print((time.perf_counter() - start) / count)
"""


@dataclass
class Path:
    node: str
    client: str
    server: str
    server_ip: str
    #: the pods' host-side veth ends (ports of ``br0``)
    interfaces: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, client_ip: str, server_ip: str) -> Path:
        node = netns.create(
            netns.unique_name("pwbpn"),
            sysctls={"net.ipv4.ip_forward": "1"},
        )
        path = cls(node, "", "", server_ip)
        try:
            netns.run(node, ["ip", "link", "add", "br0", "type", "bridge"])
            netns.run(node, ["ip", "link", "set", "br0", "up"])
            netns.run(node, ["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])
            path.client = path._pod("c", client_ip)
            path.server = path._pod("s", server_ip)
        except Exception:
            path.delete()
            raise
        return path

    def _pod(self, tag: str, address: str) -> str:
        pod = netns.create(netns.unique_name(f"pwbp{tag}"))
        host = f"vb{tag}{pod[-6:]}"
        self.interfaces[tag] = host
        netns.run(self.node, ["ip", "link", "add", host, "type", "veth", "peer", "eth0",
                              "netns", pod])  # fmt: skip
        netns.run(self.node, ["ip", "link", "set", host, "master", "br0", "up"])
        netns.run(pod, ["ip", "addr", "add", f"{address}/9", "dev", "eth0"])
        netns.run(pod, ["ip", "link", "set", "eth0", "up"])
        return pod

    def measure(self, connections: int) -> float:
        """Seconds per connect+echo+close, client on CPU 0, server on CPU 1."""
        server = subprocess.Popen(
            ["ip", "netns", "exec", self.server, "taskset", "-c", "1", sys.executable, "-c",
             SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            server.stdout.readline()
            done = netns.run(
                self.client,
                ["taskset", "-c", "0", sys.executable, "-c", CLIENT, self.server_ip,
                 str(connections)],
                timeout=300,
            )  # fmt: skip
            return float(done.stdout.strip())
        finally:
            server.kill()
            server.wait()

    def delete(self) -> None:
        for name in (self.client, self.server, self.node):
            if name:
                netns.delete(name)
