"""The program probes run *inside* a network namespace (``ip netns exec``).

``serve --tcp P,.. --udp P,.. --sctp P,..`` answers on those ports (both
families): TCP echoes what it reads, UDP echoes each datagram, SCTP answers a
raw INIT with an INIT-ACK.  It prints ``ready`` once bound and exits when its
stdin closes (so it never outlives the process that started it).

``probe --timeout T --retries N`` reads a JSON list of ``{"ip", "port",
"protocol"}`` on stdin, probes them all in parallel (threads) and prints a
JSON list of booleans in the same order.

``probe_outcome`` tells how a probe ended: ``open`` (answered), ``refused``
(reached, nothing listening: a TCP reset or ICMP port unreachable),
``unreachable`` (an ICMP host, network or administratively-prohibited
error) or ``dropped`` (no answer in time).  A firewall that rejects instead of
dropping makes a denied probe look ``refused`` or ``unreachable``.

Stdlib only and started with ``python -S``: it must stay cheap to launch and
must not import the rest of podwall.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import errno
import json
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence

from firewall_lab import sctp

BACKLOG = 128
MAX_PROBE_THREADS = 64


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _bound(kind: socket.SocketKind, port: int) -> socket.socket:
    """A dual-stack socket on ``[::]:port`` (IPv4 only when IPv6 is off)."""
    try:
        sock = socket.socket(socket.AF_INET6, kind)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:
        sock = socket.socket(socket.AF_INET, kind)
        address = ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    return sock


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        try:
            data = conn.recv(1024)
            if data:
                conn.sendall(data)
        except OSError:
            pass


def _serve_tcp(sock: socket.socket) -> None:
    sock.listen(BACKLOG)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _serve_udp(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(2048)
        sock.sendto(data, peer)


def _serve_sctp(sock: socket.socket, ports: frozenset[int]) -> None:
    family = sock.family
    while True:
        data, peer = sock.recvfrom(4096)
        if family == socket.AF_INET:
            data = sctp.strip_ipv4_header(data)
        parsed = sctp.parse(data)
        if parsed is None or parsed.chunk_type != sctp.INIT or parsed.dst_port not in ports:
            continue
        chunk = sctp.init_ack_chunk(random.getrandbits(31) | 1, 1, os.urandom(8))
        reply = sctp.packet(
            src_port=parsed.dst_port,
            dst_port=parsed.src_port,
            vtag=parsed.initiate_tag,
            chunk=chunk,
        )
        sock.sendto(reply, (peer[0], 0))


def serve(tcp: Sequence[int], udp: Sequence[int], sctp_ports: Sequence[int]) -> int:
    """Bind everything, say ``ready``, serve until stdin closes."""
    workers: list[tuple[Callable[..., None], tuple[object, ...]]] = []
    workers += [(_serve_tcp, (_bound(socket.SOCK_STREAM, port),)) for port in tcp]
    workers += [(_serve_udp, (_bound(socket.SOCK_DGRAM, port),)) for port in udp]
    for family in (socket.AF_INET, socket.AF_INET6) if sctp_ports else ():
        raw = socket.socket(family, socket.SOCK_RAW, sctp.PROTO)
        workers.append((_serve_sctp, (raw, frozenset(sctp_ports))))
    for target, args in workers:
        threading.Thread(target=target, args=args, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    return 0


def _tcp_once(ip: str, port: int, timeout: float) -> bool:
    nonce = os.urandom(8).hex().encode()
    with socket.create_connection((ip, port), timeout=timeout) as conn:
        conn.sendall(nonce)
        return conn.recv(64) == nonce


def _udp_once(ip: str, port: int, timeout: float) -> bool:
    nonce = os.urandom(8).hex().encode()
    with socket.socket(_family(ip), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        sock.send(nonce)
        return sock.recv(64) == nonce


def _sctp_once(ip: str, port: int, timeout: float) -> bool:
    family = _family(ip)
    tag = random.getrandbits(31) | 1
    src_port = random.randint(20000, 60000)
    init = sctp.packet(src_port=src_port, dst_port=port, vtag=0, chunk=sctp.init_chunk(tag, tag))
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_RAW, sctp.PROTO) as sock:
        sock.sendto(init, (ip, 0))
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data, _ = sock.recvfrom(4096)
            if family == socket.AF_INET:
                data = sctp.strip_ipv4_header(data)
            got = sctp.parse(data)
            if got is None or (got.src_port, got.dst_port, got.vtag) != (port, src_port, tag):
                continue
            return got.chunk_type == sctp.INIT_ACK
    return False


OUTCOMES = ("open", "refused", "unreachable", "dropped")
UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM})

PROBES: dict[str, Callable[[str, int, float], bool]] = {
    "TCP": _tcp_once,
    "UDP": _udp_once,
    "SCTP": _sctp_once,
}


def probe_outcome(ip: str, port: int, protocol: str, *, timeout: float, retries: int) -> str:
    """How a probe ended (see module doc; tried 1 + retries times, a refusal
    or an ICMP error ends it at once)."""
    once = PROBES[protocol.upper()]
    for _ in range(retries + 1):
        try:
            if once(ip, port, timeout):
                return "open"
        except ConnectionRefusedError:
            return "refused"
        except OSError as exc:
            if exc.errno in UNREACHABLE_ERRNOS:
                return "unreachable"
    return "dropped"


def probe_one(ip: str, port: int, protocol: str, *, timeout: float, retries: int) -> bool:
    """True when the target answered within ``timeout`` (tried 1 + retries times)."""
    return probe_outcome(ip, port, protocol, timeout=timeout, retries=retries) == "open"


def probe_batch(
    targets: Sequence[dict[str, object]], *, timeout: float, retries: int
) -> list[bool]:
    """Probe every target in parallel; results in the order given."""
    if not targets:
        return []
    workers = min(MAX_PROBE_THREADS, len(targets))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(
                probe_one,
                str(target["ip"]),
                int(str(target["port"])),
                str(target["protocol"]),
                timeout=timeout,
                retries=retries,
            )
            for target in targets
        ]
        return [future.result() for future in futures]


def _ports(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe_agent")
    sub = parser.add_subparsers(dest="mode", required=True)
    server = sub.add_parser("serve")
    for name in ("tcp", "udp", "sctp"):
        server.add_argument(f"--{name}", type=_ports, default=[])
    client = sub.add_parser("probe")
    client.add_argument("--timeout", type=float, default=0.4)
    client.add_argument("--retries", type=int, default=1)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.tcp, args.udp, args.sctp)
    targets = json.load(sys.stdin)
    print(json.dumps(probe_batch(targets, timeout=args.timeout, retries=args.retries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
