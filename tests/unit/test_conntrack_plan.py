"""How ``conntrack.forget`` reads the table: one dump of everything while the
namespace holds few entries; else four kernel-filtered dumps per IPv4
address and one dump of the IPv6 entries (the kernel's IPv6 filter is not
trusted).  Each dump walks the whole shared hash table: their number is what
ADD and DEL pay (bench/bench_plugin.py)."""

from __future__ import annotations

from firewall_plugin import addresses, conntrack

V4 = addresses.packed("10.1.0.5")
V4B = addresses.packed("10.1.0.6")
V6 = addresses.packed("fd00::5")


def families(count: int, *wanted: bytes) -> list[int]:
    return [family for family, _ in conntrack._dumps(set(wanted), count)]


def test_few_entries_one_dump_of_every_family() -> None:
    assert families(1, V4, V6) == [conntrack.AF_UNSPEC]
    assert families(conntrack.FEW, V4, V4B, V6) == [conntrack.AF_UNSPEC]


def test_many_entries_filtered_ipv4_and_one_ipv6_dump() -> None:
    many = conntrack.FEW + 1
    assert families(many, V4) == [conntrack.AF_INET] * 4
    assert families(many, V4, V4B, V6) == [conntrack.AF_INET] * 8 + [conntrack.AF_INET6]
    assert families(many, V6) == [conntrack.AF_INET6]
    assert all(body == b"" for family, body in conntrack._dumps({V6}, many))
