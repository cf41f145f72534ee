"""The typed model of what podwall writes into the kernel: rules, chains, ipsets.

Rules are data.  ``firewall_plugin.render`` turns them into
``iptables-restore``/``ipset restore`` text; the ``iptc`` backend turns the same
objects into python-iptables rules.  Nothing else builds rule text.

Value classes are ``values.Frozen`` (immutable, compared by value), not
dataclasses: the CNI plugin imports this module at every start.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin.values import Frozen, init_fields, literal_aliases

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    Family = Literal["ipv4", "ipv6"]
    IPSetKind = Literal["hash:ip", "hash:net", "hash:ip,port", "hash:net,port"]
else:
    __getattr__ = literal_aliases(
        __name__,
        {
            "Family": ("ipv4", "ipv6"),
            "IPSetKind": ("hash:ip", "hash:net", "hash:ip,port", "hash:net,port"),
        },
    )

FAMILIES: tuple[Family, ...] = ("ipv4", "ipv6")

#: ``(option, value)``: ``option`` without the leading ``--``; a leading ``!``
#: negates it (``("!match-set", "S src")`` renders ``! --match-set S src``);
#: an empty value is a flag.
Option = tuple[str, str]


class Match(Frozen):
    """One ``-m <module> --opt value ...`` match."""

    __slots__ = ("module", "options")
    module: str
    options: tuple[Option, ...]

    def __init__(self, module: str, options: tuple[Option, ...] = ()) -> None:
        init_fields(self, module, options)


class Rule(Frozen):
    """One rule.  Fields render in iptables-save order: -s -d -i -o -p -m... -j."""

    __slots__ = (
        "comment",
        "destination",
        "goto",
        "in_interface",
        "matches",
        "out_interface",
        "protocol",
        "source",
        "target",
        "target_options",
    )
    target: str
    comment: str
    source: str | None
    destination: str | None
    in_interface: str | None
    out_interface: str | None
    protocol: str | None
    matches: tuple[Match, ...]
    target_options: tuple[Option, ...]
    goto: bool

    def __init__(
        self,
        target: str,
        comment: str,
        source: str | None = None,
        destination: str | None = None,
        in_interface: str | None = None,
        out_interface: str | None = None,
        protocol: str | None = None,
        matches: tuple[Match, ...] = (),
        target_options: tuple[Option, ...] = (),
        goto: bool = False,
    ) -> None:
        init_fields(
            self,
            target,
            comment,
            source,
            destination,
            in_interface,
            out_interface,
            protocol,
            matches,
            target_options,
            goto,
        )


class Chain(Frozen):
    """A podwall-owned chain of the filter table and its rules, in order."""

    __slots__ = ("name", "rules")
    name: str
    rules: tuple[Rule, ...]

    def __init__(self, name: str, rules: tuple[Rule, ...] = ()) -> None:
        init_fields(self, name, rules)


class IPSet(Frozen):
    """A podwall-owned ipset.  Entries are ipset ``add`` arguments, sorted,
    e.g. ``10.0.0.0/8``, ``10.1.0.0/16 nomatch``, ``10.0.0.5,tcp:8080``."""

    __slots__ = ("entries", "family", "kind", "name")
    name: str
    kind: IPSetKind
    family: Family
    entries: tuple[str, ...]

    def __init__(
        self, name: str, kind: IPSetKind, family: Family, entries: tuple[str, ...] = ()
    ) -> None:
        init_fields(self, name, kind, family, entries)


class FamilyState(Frozen):
    """Everything podwall wants in one family: chains and sets by name
    (each defaults to a new empty dict)."""

    __slots__ = ("chains", "family", "sets")
    family: Family
    chains: Mapping[str, Chain]
    sets: Mapping[str, IPSet]

    def __init__(
        self,
        family: Family,
        chains: Mapping[str, Chain] | None = None,
        sets: Mapping[str, IPSet] | None = None,
    ) -> None:
        init_fields(self, family, {} if chains is None else chains, {} if sets is None else sets)


def family_of(address: str) -> Family:
    """``ipv6`` when the address or CIDR contains a colon, else ``ipv4``."""
    return "ipv6" if ":" in address else "ipv4"
