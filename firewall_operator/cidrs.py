"""CIDR helpers shared by NetworkPolicy ``ipBlock`` and FirewallRule ``networks``.

Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

from firewall_plugin import model

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CIDRError(ValueError):
    """Not a CIDR, or an ``except`` that is not inside its ``cidr``."""


def parse(text: object, where: str) -> Network:
    """A network from ``a.b.c.d/n`` or ``x::/n`` (host bits are cleared)."""
    if not isinstance(text, str) or "/" not in text:
        raise CIDRError(f"{where}: {text!r} is not a CIDR (address/prefix)")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise CIDRError(f"{where}: {text!r} is not a CIDR: {exc}") from exc


def family(network: Network) -> model.Family:
    return "ipv6" if network.version == 6 else "ipv4"


def set_entries(network: Network) -> list[str]:
    """``hash:net`` entries covering ``network``.  ipset refuses prefix 0
    (``0.0.0.0/0`` and ``::/0``), so those become their two /1 halves."""
    if network.prefixlen == 0:
        return [str(half) for half in network.subnets(prefixlen_diff=1)]
    return [str(network)]


def bounds(network: Network) -> tuple[int, int]:
    """The first and last address of ``network``, as integers."""
    return int(network.network_address), int(network.broadcast_address)


def address_int(address: str) -> int | None:
    """An IP address as an integer (None: not an address)."""
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    except OSError:
        ip = _address(address)
        return None if ip is None else int(ip)
    return int.from_bytes(packed, "big")


@functools.lru_cache(maxsize=65536)
def _address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def contains(network: Network, address: str) -> bool:
    ip = _address(address)
    return ip is not None and ip.version == network.version and ip in network
