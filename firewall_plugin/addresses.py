"""IP addresses validated and spelled as ``ipaddress`` spells them, without
importing ``ipaddress`` on the CNI plugin's start-up path.

``import ipaddress`` brings ``functools`` and ``collections`` along: 1.5-4 ms
of CPU at every plugin start.  The plain forms a CNI result carries (dotted
IPv4, IPv6 hex groups with at most one ``::``, a decimal prefix length) are
parsed and printed here; every other input (netmask prefixes, embedded IPv4,
scope IDs, IPv4-mapped results, anything invalid) is handed to ``ipaddress``
itself, so the result, or the ValueError, is always what ``ipaddress`` gives.

Pure: no I/O.
"""

from __future__ import annotations

DIGITS = frozenset("0123456789")
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def interface(text: str) -> str:
    """``str(ipaddress.ip_interface(text))``: ``10.1.0.5/24`` stays, a bare
    address gets ``/32`` or ``/128``, IPv6 is compressed and lower-case."""
    parsed = _parse(text)
    if parsed is None:
        import ipaddress

        return str(ipaddress.ip_interface(text))
    bits, value, prefix = parsed
    return f"{_format(bits, value)}/{prefix}"


def network(text: str) -> str:
    """``str(ipaddress.ip_network(text, strict=False))``: host bits cleared."""
    parsed = _parse(text)
    if parsed is None:
        import ipaddress

        return str(ipaddress.ip_network(text, strict=False))
    bits, value, prefix = parsed
    host_bits = (1 << (bits - prefix)) - 1
    return f"{_format(bits, value & ~host_bits)}/{prefix}"


def _parse(text: str) -> tuple[int, int, int] | None:
    """(32 or 128, address as int, prefix length) for a plain form, else None."""
    address, slash, prefix_text = text.partition("/")
    if ":" in address:
        bits, value = 128, _ipv6(address)
    else:
        bits, value = 32, _ipv4(address)
    if value is None or (bits == 128 and value >> 32 == 0xFFFF):
        return None  # IPv4-mapped: printed differently across Python versions
    if not slash:
        return bits, value, bits
    if not prefix_text or not DIGITS.issuperset(prefix_text) or int(prefix_text) > bits:
        return None
    return bits, value, int(prefix_text)


def _ipv4(text: str) -> int | None:
    parts = text.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not 0 < len(part) <= 3 or not DIGITS.issuperset(part):
            return None
        if (part[0] == "0" and len(part) > 1) or int(part) > 255:
            return None
        value = value << 8 | int(part)
    return value


def _ipv6(text: str) -> int | None:
    if "." in text or "%" in text:
        return None
    head, double_colon, tail = text.partition("::")
    left = head.split(":") if head else []
    right = tail.split(":") if tail else []
    if double_colon:
        if "::" in tail or len(left) + len(right) > 7:
            return None
        groups = [*left, *["0"] * (8 - len(left) - len(right)), *right]
    elif len(left) == 8:
        groups = left
    else:
        return None
    value = 0
    for group in groups:
        if not 0 < len(group) <= 4 or not HEX_DIGITS.issuperset(group):
            return None
        value = value << 16 | int(group, 16)
    return value


def _format(bits: int, value: int) -> str:
    if bits == 32:
        return ".".join(str(byte) for byte in value.to_bytes(4, "big"))
    groups = [f"{(value >> shift) & 0xFFFF:x}" for shift in range(112, -16, -16)]
    start, length = _longest_zero_run(groups)
    if length < 2:
        return ":".join(groups)
    return ":".join(groups[:start]) + "::" + ":".join(groups[start + length :])


def _longest_zero_run(groups: list[str]) -> tuple[int, int]:
    """(start, length) of the first longest run of ``0`` groups (RFC 5952)."""
    best_start, best_length, start = -1, 0, -1
    for index, group in enumerate(groups):
        if group != "0":
            start = -1
            continue
        if start < 0:
            start = index
        if index - start + 1 > best_length:
            best_start, best_length = start, index - start + 1
    return best_start, best_length


def value_of(text: str) -> tuple[int, int, int]:
    """(32 or 128, the address as an integer, prefix length) of ``IP[/prefix]``
    in a plain form; ValueError otherwise."""
    parsed = _parse(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a plain IPv4 or IPv6 address")
    return parsed


def packed(text: str) -> bytes:
    """The address of ``IP[/prefix]`` in network byte order (4 or 16 bytes)."""
    bits, value, _ = value_of(text)
    return value.to_bytes(bits // 8, "big")


def text(raw: bytes) -> str:
    """``packed``'s inverse: 4 or 16 bytes in network order, in normal form."""
    return _format(len(raw) * 8, int.from_bytes(raw, "big"))


#: (bits, network, prefix, what it is) of addresses a pod can never own
_NOT_A_POD = (
    (32, 0, 32, "the unspecified address"),
    (32, 0x7F000000, 8, "a loopback address"),
    (32, 0xA9FE0000, 16, "an IPv4 link-local address"),
    (32, 0xE0000000, 4, "a multicast address"),
    (32, 0xFFFFFFFF, 32, "the broadcast address"),
    (128, 0, 128, "the unspecified address"),
    (128, 1, 128, "the loopback address"),
    (128, 0xFE80 << 112, 10, "an IPv6 link-local address"),
    (128, 0xFF << 120, 8, "a multicast address"),
)


def not_a_pod_address(text: str) -> str:
    """Why ``IP/prefix`` cannot be a pod's own address ('' when it can): the
    unspecified, loopback, link-local, multicast and broadcast addresses,
    the broadcast address of its own IPv4 subnet, IPv4-mapped IPv6
    addresses and anything that is no plain address."""
    parsed = _parse(text)
    if parsed is None:
        address = text.partition("/")[0]
        mapped = ":" in address and (_ipv6(address) or 0) >> 32 == 0xFFFF
        return "an IPv4-mapped IPv6 address" if mapped else "not a plain IPv4 or IPv6 address"
    bits, value, prefix = parsed
    for width, network, length, what in _NOT_A_POD:
        if width == bits and value >> (bits - length) == network >> (bits - length):
            return what
    host_bits = bits - prefix
    host_part = value & ((1 << host_bits) - 1)
    if bits == 32 and host_bits >= 2 and host_part == (1 << host_bits) - 1:
        return f"the broadcast address of its subnet /{prefix}"
    if host_bits >= 2 and host_part == 0:
        return f"the network address of its subnet /{prefix}"
    return ""
