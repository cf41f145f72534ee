"""Set keys as nf_tables compares them: addresses, interface names,
concatenations, and CIDR lists turned into interval elements.

Pure: no I/O.
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_pton

from firewall_plugin import addresses
from firewall_plugin.nft import expr
from firewall_plugin.nft.objects import Element

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}


_MAPPED = bytes(10) + b"\xff\xff"


def address(text: str) -> bytes:
    """An address (``IP`` or ``IP/prefix``: the address part) as 4 or 16
    bytes; exactly the forms ``addresses.packed`` takes (ValueError else).
    The C parser first: the agent packs every member of every peer set (tens
    of thousands per sync on a big cluster); text it would read differently
    from ``addresses`` (IPv4 inside IPv6, IPv4-mapped) takes the strict way."""
    head = text.split("/", 1)[0]
    v6 = ":" in head
    if not (v6 and "." in head):
        try:
            raw = inet_pton(AF_INET6 if v6 else AF_INET, head)
        except (OSError, ValueError):
            raw = b""
        if raw and raw[:12] != _MAPPED:
            return raw
    return addresses.packed(head)


def pad(raw: bytes) -> bytes:
    """One field of a concatenation: padded to a multiple of 4 bytes."""
    return raw + bytes(-len(raw) % 4)


def concat(*fields: bytes) -> bytes:
    return b"".join(pad(field) for field in fields)


def ifname(name: str) -> bytes:
    return expr.ifname(name)


def port_key(address_text: str, protocol: str, port: int) -> bytes:
    """``address . inet_proto . inet_service`` (``concat`` of the three,
    spelt out: the agent makes one per named-port peer)."""
    proto = bytes((PROTOCOL_NUMBERS[protocol], 0, 0, 0))
    return address(address_text) + proto + port.to_bytes(2, "big") + b"\0\0"


def parse_net(text: str) -> tuple[int, int, int]:
    """(bits, first address, last address) of ``IP[/prefix]``."""
    bits, value, prefix = addresses.value_of(text)
    host = (1 << (bits - prefix)) - 1
    first = value & ~host
    return bits, first, first | host


def net_entries_to_ranges(entries: Iterable[str]) -> tuple[int, list[tuple[int, int]]]:
    """ipset ``hash:net`` entries (``NET`` or ``NET nomatch``) as the address
    ranges they match, ipset's way: the most specific entry containing an
    address decides, and a ``nomatch`` entry matches nothing.  Returns
    (bits, sorted disjoint inclusive ranges)."""
    nets: list[tuple[int, int, int, bool]] = []  # prefix, first, last, matches
    bits = 32
    for entry in entries:
        text, _, flag = entry.partition(" ")
        bits, first, last = parse_net(text)
        prefix = bits - (last - first + 1).bit_length() + 1
        nets.append((prefix, first, last, flag.strip() != "nomatch"))
    cuts = sorted({first for _, first, _, _ in nets} | {last + 1 for _, _, last, _ in nets})
    ranges: list[tuple[int, int]] = []
    for start, stop in zip(cuts, cuts[1:], strict=False):  # noqa: RUF007 - itertools costs start-up
        deciding = [net for net in nets if net[1] <= start and stop - 1 <= net[2]]
        if not deciding or not max(deciding)[3]:
            continue
        if ranges and ranges[-1][1] + 1 == start:
            ranges[-1] = (ranges[-1][0], stop - 1)
        else:
            ranges.append((start, stop - 1))
    return bits, ranges


def interval_elements(bits: int, ranges: Sequence[tuple[int, int]]) -> list[Element]:
    """Elements of an interval set holding ``ranges``, as the ``nft`` tool
    writes them: each range's start, its end (the address after it, flagged
    as an interval end; a range reaching the top of the address space is
    flagged open instead), and an end marker at 0 when nothing starts there."""
    width = bits // 8
    elements: list[Element] = []
    if not ranges:
        return elements
    if ranges[0][0] != 0:
        elements.append(Element(bytes(width), end=True))
    top = (1 << bits) - 1
    for first, last in ranges:
        if last == top:
            elements.append(Element(first.to_bytes(width, "big"), open=True))
        else:
            elements.append(Element(first.to_bytes(width, "big")))
            elements.append(Element((last + 1).to_bytes(width, "big"), end=True))
    return elements
