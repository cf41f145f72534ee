"""The typed model of what podwall writes into the kernel: rules, chains, ipsets.

Rules are data.  ``firewall_plugin.render`` turns them into
``iptables-restore``/``ipset restore`` text; the ``iptc`` backend turns the same
objects into python-iptables rules.  Nothing else builds rule text.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Family = Literal["ipv4", "ipv6"]
FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")

#: ``(option, value)``: ``option`` without the leading ``--``; a leading ``!``
#: negates it (``("!match-set", "S src")`` renders ``! --match-set S src``);
#: an empty value is a flag.
Option = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Match:
    """One ``-m <module> --opt value ...`` match."""

    module: str
    options: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule.  Fields render in iptables-save order: -s -d -i -o -p -m... -j."""

    target: str
    comment: str
    source: str | None = None
    destination: str | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    protocol: str | None = None
    matches: tuple[Match, ...] = ()
    target_options: tuple[Option, ...] = ()
    goto: bool = False


@dataclass(frozen=True, slots=True)
class Chain:
    """A podwall-owned chain of the filter table and its rules, in order."""

    name: str
    rules: tuple[Rule, ...] = ()


IPSetKind = Literal["hash:ip", "hash:net", "hash:ip,port", "hash:net,port"]


@dataclass(frozen=True, slots=True)
class IPSet:
    """A podwall-owned ipset.  Entries are ipset ``add`` arguments, sorted,
    e.g. ``10.0.0.0/8``, ``10.1.0.0/16 nomatch``, ``10.0.0.5,tcp:8080``."""

    name: str
    kind: IPSetKind
    family: Family
    entries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FamilyState:
    """Everything podwall wants in one family: chains and sets by name."""

    family: Family
    chains: Mapping[str, Chain] = field(default_factory=dict)
    sets: Mapping[str, IPSet] = field(default_factory=dict)


def family_of(address: str) -> Family:
    """``ipv6`` when the address or CIDR contains a colon, else ``ipv4``."""
    return "ipv6" if ":" in address else "ipv4"
