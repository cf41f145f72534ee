"""nfnetlink_log: receive the packets that NFLOG rules log, over netlink.

``NflogSocket(group)`` opens an ``AF_NETLINK``/``NETLINK_NETFILTER`` socket in
the calling thread's network namespace, binds NFLOG ``group`` and asks for
the first ``copy_range`` bytes of each packet, delivered at once
(queue threshold 1).  ``receive()`` returns the logged packets of one read,
parsed (``LoggedPacket``: prefix, time, interfaces, addresses, protocol,
ports); a kernel that had to drop messages because the socket buffer was
full reports it as ``overruns``.  NFLOG never waits for a reader: the kernel
queues a copy and carries on, and drops the copy when nobody reads.

Hand-written with ``socket`` and ``struct`` (about 150 lines): no maintained
Python library speaks nfnetlink_log (pyroute2 0.9.7 has no NFLOG support;
the ``nflog`` and ``nflogr`` packages wrap the C libnetfilter_log and were
last released in 2016 and 2023).  Message layouts: linux/netfilter/
nfnetlink_log.h.  Never changes rules; only reads what rules log.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
MSG_PACKET = NFNL_SUBSYS_ULOG << 8 | 0
MSG_CONFIG = NFNL_SUBSYS_ULOG << 8 | 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR, NLMSG_DONE = 2, 3
CMD_BIND, CMD_UNBIND = 1, 2
CFG_CMD, CFG_MODE, CFG_NLBUFSIZ, CFG_TIMEOUT, CFG_QTHRESH = 1, 2, 3, 4, 5
COPY_PACKET = 2
ATTR_HDR, ATTR_TIMESTAMP, ATTR_INDEV, ATTR_OUTDEV = 1, 3, 4, 5
ATTR_PHYSINDEV, ATTR_PHYSOUTDEV, ATTR_PAYLOAD, ATTR_PREFIX = 6, 7, 9, 10
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
PORT_PROTOCOLS = {6: "TCP", 17: "UDP", 132: "SCTP"}
PROTOCOL_NAMES = {**PORT_PROTOCOLS, 1: "ICMP", 58: "ICMPv6"}
DEFAULT_COPY = 128  # enough for IPv6 + extension headers + the ports
RECEIVE_BUFFER = 4 << 20


class NflogError(OSError):
    """The kernel refused to bind the group (in use, or no nfnetlink_log)."""


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    prefix: str
    time: float
    indev: int = 0
    outdev: int = 0
    physindev: int = 0
    physoutdev: int = 0
    family: str = ""  # ipv4, ipv6, or "" when the payload is not IP
    source: str = ""
    destination: str = ""
    protocol: str = ""  # TCP, UDP, SCTP, ICMP, ICMPv6 or the number
    source_port: int | None = None
    destination_port: int | None = None


def _attr(kind: int, payload: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (-len(payload) % 4)


def config_message(group: int, attrs: bytes, *, seq: int) -> bytes:
    """An NFULNL_MSG_CONFIG request for ``group`` (asks for an ack)."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group) + attrs
    return (
        struct.pack("=IHHII", 16 + len(body), MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
    )


def attributes(data: bytes) -> dict[int, bytes]:
    """Netlink attributes (type → payload; nested and byte-order flags cleared)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of every netlink message in one read."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        yield kind, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def _ports(protocol: int, transport: bytes) -> tuple[int | None, int | None]:
    if protocol in PORT_PROTOCOLS and len(transport) >= 4:
        source, destination = struct.unpack_from("!HH", transport)
        return source, destination
    return None, None


def parse_ip(payload: bytes) -> tuple[str, str, str, str, int | None, int | None]:
    """(family, source, destination, protocol, source port, destination port)
    of an IP packet's first bytes (IPv6 extension headers are not walked)."""
    version = payload[0] >> 4 if payload else 0
    if version == 4 and len(payload) >= 20:
        header = (payload[0] & 0x0F) * 4
        protocol = payload[9]
        ips: tuple[object, object] = (
            ipaddress.IPv4Address(payload[12:16]),
            ipaddress.IPv4Address(payload[16:20]),
        )
        family = "ipv4"
    elif version == 6 and len(payload) >= 40:
        header, protocol = 40, payload[6]
        ips = (ipaddress.IPv6Address(payload[8:24]), ipaddress.IPv6Address(payload[24:40]))
        family = "ipv6"
    else:
        return "", "", "", "", None, None
    sport, dport = _ports(protocol, payload[header:])
    name = PROTOCOL_NAMES.get(protocol, str(protocol))
    return family, str(ips[0]), str(ips[1]), name, sport, dport


def _u32(attrs: dict[int, bytes], kind: int) -> int:
    value = attrs.get(kind)
    return int(struct.unpack("!I", value[:4])[0]) if value and len(value) >= 4 else 0


def parse_packet(body: bytes) -> LoggedPacket:
    """One NFULNL_MSG_PACKET (after the netlink header)."""
    attrs = attributes(body[4:])
    stamp = attrs.get(ATTR_TIMESTAMP)
    when = time.time()
    if stamp and len(stamp) >= 16:
        seconds, micros = struct.unpack("!QQ", stamp[:16])
        when = seconds + micros / 1e6
    prefix = attrs.get(ATTR_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
    family, source, destination, protocol, sport, dport = parse_ip(attrs.get(ATTR_PAYLOAD, b""))
    return LoggedPacket(
        prefix=prefix,
        time=when,
        indev=_u32(attrs, ATTR_INDEV),
        outdev=_u32(attrs, ATTR_OUTDEV),
        physindev=_u32(attrs, ATTR_PHYSINDEV),
        physoutdev=_u32(attrs, ATTR_PHYSOUTDEV),
        family=family,
        source=source,
        destination=destination,
        protocol=protocol,
        source_port=sport,
        destination_port=dport,
    )


class NflogSocket:
    """One bound NFLOG group (see module doc); ``close()`` unbinds it."""

    def __init__(self, group: int, *, copy_range: int = DEFAULT_COPY, timeout: float = 0.5):
        if not 0 <= group <= 0xFFFF:
            raise ValueError(f"NFLOG group {group}: must be 0-65535")
        self.group = group
        self.overruns = 0
        self._seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._buffer()
            self.sock.bind((0, 0))
            self._configure(_attr(CFG_CMD, bytes([CMD_BIND])))
            mode = struct.pack("!IBB", copy_range, COPY_PACKET, 0)
            self._configure(_attr(CFG_MODE, mode) + _attr(CFG_QTHRESH, struct.pack("!I", 1)))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(timeout)

    def _buffer(self) -> None:
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                return
            except OSError:
                continue

    def _configure(self, attrs: bytes) -> None:
        self._seq += 1
        self.sock.send(config_message(self.group, attrs, seq=self._seq))
        for _ in range(64):  # packets may arrive before the ack: skip them
            for kind, body in messages(self.sock.recv(1 << 20)):
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        name = errno.errorcode.get(code, str(code))
                        raise NflogError(code, f"NFLOG group {self.group}: {name}")
                    return
        raise NflogError(errno.EPROTO, f"NFLOG group {self.group}: no answer to a config request")

    def receive(self) -> list[LoggedPacket]:
        """The packets of one read; [] on timeout (and counts overruns)."""
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.overruns += 1
                return []
            raise
        return [parse_packet(body) for kind, body in messages(data) if kind == MSG_PACKET]

    def close(self) -> None:
        try:
            self.sock.settimeout(1.0)
            self._configure(_attr(CFG_CMD, bytes([CMD_UNBIND])))
        except OSError:
            pass
        self.sock.close()
