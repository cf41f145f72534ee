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


class Endpoint(Frozen):
    """One pod attachment as the data plane sees it: which chains are its own
    and where its packets come from (DESIGN: identity is the interface).

    ``interface`` is the host-side interface of the attachment (the veth end);
    ``bridge`` the bridge that interface is a port of ("" when it is routed,
    as with ``ptp``).  A packet from the pod arrives on ``interface`` (bridge:
    on the bridge, from that port) and its source must be one of ``sources``.
    ``ingress_open``: nothing filters traffic to the pod (no policy isolates
    it): only then does it receive multicast and broadcast from other pods.
    Chain names derive from (container ID, ifname), never from addresses.
    """

    __slots__ = (
        "addresses",
        "bridge",
        "container_id",
        "ifname",
        "ingress_open",
        "interface",
        "key",
        "link_local",
        "pod",
    )
    key: str
    container_id: str
    ifname: str
    pod: str
    interface: str
    bridge: str
    addresses: tuple[str, ...]
    link_local: str
    ingress_open: bool

    def __init__(
        self,
        key: str,
        container_id: str,
        ifname: str,
        pod: str,
        interface: str,
        bridge: str = "",
        addresses: tuple[str, ...] = (),
        link_local: str = "",
        ingress_open: bool = False,
    ) -> None:
        init_fields(
            self,
            key,
            container_id,
            ifname,
            pod,
            interface,
            bridge,
            addresses,
            link_local,
            ingress_open,
        )

    @property
    def path(self) -> str:
        """The interface the IP hooks see the pod's packets arrive on (and
        leave to): its bridge, or its own interface when routed."""
        return self.bridge or self.interface

    def addresses_of(self, family: Family) -> tuple[str, ...]:
        """The pod's IPs of ``family`` (no prefix length)."""
        return tuple(ip for ip in self.addresses if family_of(ip) == family)

    def sources(self, family: Family) -> tuple[str, ...]:
        """Every source address the pod may send from in ``family``: its IPs,
        and in IPv6 its own link-local address."""
        own = self.addresses_of(family)
        if family == "ipv6" and self.link_local:
            own += (self.link_local,)
        return own


class LogSpec(Frozen):
    """How a log rule is rendered: NFLOG ``group``, at most ``rate`` packets
    per ``per_seconds`` after a ``burst`` (a kernel limit per rule)."""

    __slots__ = ("burst", "group", "per_seconds", "rate")
    group: int
    rate: int
    per_seconds: int
    burst: int

    def __init__(self, group: int, rate: int = 10, per_seconds: int = 60, burst: int = 5) -> None:
        init_fields(self, group, rate, per_seconds, burst)

    @property
    def iptables_rate(self) -> str:
        """The rate as iptables-save prints it (``10/min``)."""
        unit = {1: "sec", 60: "min", 3600: "hour", 86400: "day"}[self.per_seconds]
        return f"{self.rate}/{unit}"


def family_of(address: str) -> Family:
    """``ipv6`` when the address or CIDR contains a colon, else ``ipv4``."""
    return "ipv6" if ":" in address else "ipv4"
