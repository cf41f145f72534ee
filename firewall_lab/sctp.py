"""Hand-built SCTP packets: INIT and INIT-ACK with a correct CRC32c.

This kernel has no SCTP sockets, but a raw protocol-132 socket can send an
INIT and the peer's raw socket can answer it with an INIT-ACK; conntrack
tracks the pair and ``-p sctp --dport`` rules match it (docs/facts.md).  Only what
such a probe needs is here: build, checksum and parse the common header and
the first chunk.

Pure and stdlib-only (``probe_agent`` runs it inside network namespaces with
``python -I -S``): no I/O.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

PROTO = 132
INIT = 1
INIT_ACK = 2
ABORT = 6
STATE_COOKIE = 7
_HEADER = struct.Struct("!HHII")
_INIT_BODY = struct.Struct("!IIHHI")  # initiate tag, a_rwnd, out streams, in streams, TSN
_CHUNK = struct.Struct("!BBH")
_POLY = 0x82F63B78  # CRC32c (Castagnoli), reflected


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC32c of ``data`` (RFC 3309; 32 zero bytes give 0x8A9136AA)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def packet(*, src_port: int, dst_port: int, vtag: int, chunk: bytes) -> bytes:
    """Common header + ``chunk``, checksum filled in (little-endian, as SCTP
    stores CRC32c)."""
    raw = _HEADER.pack(src_port, dst_port, vtag, 0) + chunk
    return raw[:8] + struct.pack("<I", crc32c(raw)) + raw[12:]


def init_chunk(tag: int, tsn: int) -> bytes:
    """An INIT chunk with initiate tag ``tag`` and no parameters."""
    body = _INIT_BODY.pack(tag, 65535, 10, 10, tsn)
    return _CHUNK.pack(INIT, 0, _CHUNK.size + len(body)) + body


def init_ack_chunk(tag: int, tsn: int, cookie: bytes) -> bytes:
    """An INIT-ACK chunk carrying the mandatory State Cookie parameter."""
    padding = b"\0" * (-len(cookie) % 4)
    param = struct.pack("!HH", STATE_COOKIE, 4 + len(cookie)) + cookie + padding
    body = _INIT_BODY.pack(tag, 65535, 10, 10, tsn) + param
    return _CHUNK.pack(INIT_ACK, 0, _CHUNK.size + len(body)) + body


class Parsed(NamedTuple):
    """The fields of a received packet a probe looks at."""

    src_port: int
    dst_port: int
    vtag: int
    chunk_type: int
    initiate_tag: int  # 0 unless INIT or INIT-ACK
    checksum_ok: bool


def parse(data: bytes) -> Parsed | None:
    """Parse an SCTP packet (without IP header); None when too short."""
    if len(data) < _HEADER.size + _CHUNK.size:
        return None
    src_port, dst_port, vtag, _ = _HEADER.unpack_from(data)
    (stored,) = struct.unpack_from("<I", data, 8)
    checksum_ok = crc32c(data[:8] + b"\0\0\0\0" + data[12:]) == stored
    chunk_type = data[_HEADER.size]
    tag = 0
    if chunk_type in (INIT, INIT_ACK) and len(data) >= _HEADER.size + 8:
        (tag,) = struct.unpack_from("!I", data, _HEADER.size + _CHUNK.size)
    return Parsed(src_port, dst_port, vtag, chunk_type, tag, checksum_ok)


def strip_ipv4_header(data: bytes) -> bytes:
    """IPv4 raw sockets deliver the IP header too; IPv6 ones do not."""
    return data[(data[0] & 0x0F) * 4 :] if data else data
