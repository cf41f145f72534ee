"""An attacker's (and a victim's) toolkit, run *inside* one network namespace.

``python -S -c '... main()' --udp 9999,4444`` binds dual-stack UDP sockets
on those ports and raw ICMP/ICMPv6 sockets, records everything marked that
arrives (markers are ``pw-`` + 8 characters of ``[a-z0-9]``), prints
``ready`` and then answers one JSON command per stdin line with one JSON
line on stdout:

* ``{"op": "udp", "sport": P, "to": IP, "dport": P, "data": M}``: a normal
  datagram from the bound port ``sport`` (0: any port).
* ``{"op": "forge", "source": IP, "to": IP, "sport": P, "dport": P, "data": M}``:
  a UDP datagram with any source address, from a raw ``IPPROTO_RAW``
  socket (the header is ours: no kernel check of the source), sent 3 times.
* ``{"op": "icmp-error", "to": IP, "inner": [SRC, DST, SPORT, DPORT], "data": M}``:
  an ICMP(v6) port unreachable quoting a UDP packet SRC:SPORT -> DST:DPORT.
* ``{"op": "ns", "to": IP, "data": M}``: a neighbour solicitation (hop
  limit 255) carrying a payload, to any address.
* ``{"op": "ra"}``: a router advertisement (lifetime 1800 s) to ``ff02::1``.
* ``{"op": "arp", "claim": IP, "to": IP, "mac": MAC}``: an ARP reply to
  ``to`` (at ``mac``) saying that ``claim`` is at this pod's MAC address;
  ``{"op": "na", "claim": IP, "to": IP}``: the IPv6 counterpart, an
  unsolicited neighbour advertisement with the override flag.
* ``{"op": "tagged", "source": IP, "to": IP, "mac": MAC, "dport": P, "data": M}``:
  the UDP datagram of ``forge`` in an 802.1Q frame with VLAN ID 0 (a
  "priority tag", which receivers treat as untagged) to ``mac`` (``"tpid":
  0x88a8`` for an 802.1ad tag).
* ``{"op": "scan6", "wait": S}``: an echo request to ``ff02::1``; answers the
  sources that replied within ``S`` seconds.
* ``{"op": "tcp", "to": IP, "port": P, "timeout": S}``: can a TCP connection
  be made (``fe80::`` addresses go out of eth0)?
* ``{"op": "connect", "name": N, "to": IP, "port": P, "timeout": S}``: open a
  TCP connection and keep it as ``N``; ``{"op": "echo", "name": N, "data": M,
  "timeout": S}``: send ``M`` on it and answer whether it came back (an echo
  server at the other end) within ``S`` seconds; ``{"op": "listen", "port":
  P}``: such an echo server (both families), echoing for as long as each
  connection lasts.
* ``{"op": "report"}``: every marker received so far, with how it came;
  ``{"op": "clear"}`` forgets them.

Test support only, stdlib only (started with ``python -S``).
"""

from __future__ import annotations

import json
import os
import random
import re
import select
import socket
import struct
import sys
import threading
import time
from typing import Any

IFNAME = "eth0"
MARKER = re.compile(rb"pw-[a-z0-9]{8}")
UDP, ICMPV6 = 17, 58
ECHO_REQUEST, ECHO_REPLY = 128, 129
NS, RA = 135, 134


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _v6(ip: str) -> bool:
    return ":" in ip


def _packed(ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if _v6(ip) else socket.AF_INET, ip.split("%")[0])


def udp_segment(source: str, dest: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload with a correct checksum (pseudo header of
    either family)."""
    length = 8 + len(payload)
    if _v6(source):
        pseudo = _packed(source) + _packed(dest) + struct.pack("!IxxxB", length, UDP)
    else:
        pseudo = _packed(source) + _packed(dest) + struct.pack("!xBH", UDP, length)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    value = checksum(pseudo + header + payload) or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, value) + payload


def ip_packet(source: str, dest: str, proto: int, body: bytes, *, hops: int = 64) -> bytes:
    """An IPv4 or IPv6 header (IPv4 checksum filled in) followed by ``body``."""
    if _v6(source):
        head = struct.pack("!IHBB", 6 << 28, len(body), proto, hops)
        return head + _packed(source) + _packed(dest) + body
    head = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(body),
        random.randrange(1, 0xFFFF),
        0,
        hops,
        proto,
        0,
        _packed(source),
        _packed(dest),
    )
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + body


def _address(ip: str, port: int = 0) -> tuple[Any, ...]:
    if _v6(ip):
        scope = socket.if_nametoindex(IFNAME) if ip.lower().startswith("fe80") else 0
        return (ip.split("%")[0], port, 0, scope)
    return (ip, port)


class Station:
    def __init__(self, udp_ports: list[int]) -> None:
        self.lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        self.connections: dict[str, socket.socket] = {}
        self.udp: dict[int, socket.socket] = {}
        for port in udp_ports:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
            self.udp[port] = sock
        self.icmp4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.icmp6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        readers = [(sock, f"udp/{port}") for port, sock in self.udp.items()]
        readers += [(self.icmp4, "icmp"), (self.icmp6, "icmp6")]
        for sock, via in readers:
            threading.Thread(target=self._receive, args=(sock, via), daemon=True).start()

    def _receive(self, sock: socket.socket, via: str) -> None:
        while True:
            data, peer = sock.recvfrom(65535)
            source = str(peer[0]).removeprefix("::ffff:")
            with self.lock:
                for marker in MARKER.findall(data):
                    self.received.append({"via": via, "source": source, "data": marker.decode()})

    # --- commands -------------------------------------------------------------------

    def udp_send(self, sport: int, to: str, dport: int, data: str) -> bool:
        sock = self.udp.get(sport)
        if sock is None:
            family = socket.AF_INET6 if _v6(to) else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
        target = _address(to, dport)
        if sock.family == socket.AF_INET6 and not _v6(to):
            target = ("::ffff:" + to, dport, 0, 0)
        sock.sendto(data.encode(), target)
        return True

    def forge(self, source: str, to: str, sport: int, dport: int, data: str) -> bool:
        segment = udp_segment(source, to, sport, dport, data.encode())
        family = socket.AF_INET6 if _v6(to) else socket.AF_INET
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            for _ in range(3):
                sock.sendto(ip_packet(source, to, UDP, segment), _address(to))
        return True

    def icmp_error(self, to: str, inner: list[Any], data: str) -> bool:
        src, dst, sport, dport = inner
        quoted = ip_packet(src, dst, UDP, udp_segment(src, dst, sport, dport, data.encode()))
        if _v6(to):
            body = struct.pack("!BBHI", 1, 4, 0, 0) + quoted  # kernel sums ICMPv6
            with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
                sock.sendto(body, _address(to))
            return True
        head = struct.pack("!BBHI", 3, 3, 0, 0)
        body = head[:2] + struct.pack("!H", checksum(head + quoted)) + head[4:] + quoted
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            sock.sendto(body, _address(to))
        return True

    def _icmp6_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(IFNAME)
        )
        return sock

    def ns(self, to: str, data: str) -> bool:
        body = struct.pack("!BBHI", NS, 0, 0, 0) + _packed(to) + data.encode()
        with self._icmp6_socket() as sock:
            for _ in range(3):
                sock.sendto(body, _address(to))
        return True

    def ra(self) -> bool:
        body = struct.pack("!BBHBBHII", RA, 0, 0, 64, 0, 1800, 0, 0)
        with self._icmp6_socket() as sock:
            for _ in range(3):
                sock.sendto(body, ("ff02::1", 0, 0, socket.if_nametoindex(IFNAME)))
                time.sleep(0.05)
        return True

    def _mac(self) -> bytes:
        with open(f"/sys/class/net/{IFNAME}/address") as handle:
            return bytes.fromhex(handle.read().strip().replace(":", ""))

    def arp(self, claim: str, to: str, mac: str) -> bool:
        own, peer = self._mac(), bytes.fromhex(mac.replace(":", ""))
        body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + own + _packed(claim) + peer + _packed(to)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((IFNAME, 0))
            for _ in range(3):
                sock.send(peer + own + struct.pack("!H", 0x0806) + body)
                time.sleep(0.05)
        return True

    def tagged(
        self, source: str, to: str, mac: str, dport: int, data: str, tpid: int = 0x8100
    ) -> bool:
        segment = udp_segment(source, to, 33333, dport, data.encode())
        packet = ip_packet(source, to, UDP, segment)
        ethertype = 0x86DD if _v6(to) else 0x0800
        peer = bytes.fromhex(mac.replace(":", ""))
        frame = peer + self._mac() + struct.pack("!HHH", tpid, 0, ethertype) + packet
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((IFNAME, 0))
            for _ in range(3):
                sock.send(frame)
        return True

    def na(self, claim: str, to: str) -> bool:
        option = struct.pack("!BB", 2, 1) + self._mac()  # target link-layer address
        body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + _packed(claim) + option
        with self._icmp6_socket() as sock:
            for _ in range(3):
                sock.sendto(body, _address(to))
                time.sleep(0.05)
        return True

    def scan6(self, wait: float) -> list[str]:
        ident = random.randrange(1, 0xFFFF)
        found: set[str] = set()
        with self._icmp6_socket() as sock:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)  # not ourselves
            sock.sendto(
                struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, 1) + b"pw-scan",
                ("ff02::1", 0, 0, socket.if_nametoindex(IFNAME)),
            )
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                data, peer = sock.recvfrom(2048)
                kind, _, _, got = struct.unpack("!BBHH", data[:6])
                if kind == ECHO_REPLY and got == ident:
                    found.add(str(peer[0]).split("%")[0])
        return sorted(found)

    def tcp(self, to: str, port: int, timeout: float) -> bool:
        family = socket.AF_INET6 if _v6(to) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(_address(to, port))
            except OSError:
                return False
        return True

    def connect(self, name: str, to: str, port: int, timeout: float) -> bool:
        family = socket.AF_INET6 if _v6(to) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(_address(to, port))
        except OSError:
            sock.close()
            return False
        self.connections[name] = sock
        return True

    def echo(self, name: str, data: str, timeout: float) -> bool:
        sock = self.connections[name]
        sock.settimeout(timeout)
        wanted = data.encode()
        try:
            sock.sendall(wanted)
            got = b""
            while not got.endswith(wanted):
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                got += chunk
        except OSError:
            return False
        return True

    def listen(self, port: int) -> bool:
        server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("::", port))
        server.listen(64)

        def echo(conn: socket.socket) -> None:
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

        def accept() -> None:
            while True:
                conn, _ = server.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return True

    def handle(self, command: dict[str, Any]) -> Any:
        op = command.pop("op")
        if op == "report":
            with self.lock:
                return list(self.received)
        if op == "clear":
            with self.lock:
                self.received.clear()
            return True
        action = {
            "udp": self.udp_send,
            "forge": self.forge,
            "icmp-error": self.icmp_error,
            "ns": self.ns,
            "ra": self.ra,
            "arp": self.arp,
            "na": self.na,
            "tagged": self.tagged,
            "scan6": self.scan6,
            "tcp": self.tcp,
            "connect": self.connect,
            "echo": self.echo,
            "listen": self.listen,
        }[op]
        return action(**command)


def main(argv: list[str]) -> int:
    ports = [int(p) for p in argv[argv.index("--udp") + 1].split(",")] if "--udp" in argv else []
    station = Station(ports)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            answer: Any = {"ok": station.handle(json.loads(line))}
        except Exception as exc:  # the test reads the error
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    os._exit(0)  # receiver threads block in recvfrom


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
