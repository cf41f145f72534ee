"""podwall's nftables layout: two tables of its own, ahead of everyone else's.

``table inet podwall`` (IPv4 and IPv6 together)::

    chain prerouting   hook prerouting priority -300 (raw; before conntrack)
        iifname . ip saddr @owned4 accept       a pod's own source (IPv6: not
        iifname . ip6 saddr @owned6 accept      ICMPv6, which the guard sees)
        iifname @ifaces goto guard             routed pod interfaces (ptp)
        ip saddr @local4 iifname . ip saddr != @owned4 drop    a pod's address
        ip6 saddr @local6 iifname . ip6 saddr != @owned6 drop  from elsewhere
    chain guard        router advertisements and redirects drop; neighbour
                       advertisements for an address (iif . target) not in
                       @owned6 drop; (iif . saddr) in @owned6 return;
                       :: for DAD return; drop
    chain forward      hook forward priority -5 (before iptables' filter, 0)
        ct state established accept
        meta l4proto ipv6-icmp jump icmp6
        iifname . ip saddr vmap @from4          jump the sender's egress chain
        ct state related (not from a pod) accept
        oifname . ip daddr vmap @to4            jump the receiver's ingress chain
    chain icmp6        RA/redirect from a pod interface drop; ND (hop limit
                       255) and MLD reports only on the link (@links:
                       bridge . bridge) accept, else drop
    chain input        hook input priority -5: what pods send to their own
                       node goes through their egress chain (@from4/@from6)
    chain PODWALL-{I,E}-<h>-{4,6} and their tier chains: the policy chains

``table bridge podwall`` (bridge ports: seen only in the bridge family)::

    chain prerouting   hook prerouting priority -300 (before br_netfilter)
        iifname . ip saddr @src4 accept; iifname . ip6 saddr @src6 accept
                                               (not ICMPv6)
        iifname @ports goto guard
        ip saddr @local4 drop; ip6 saddr @local6 drop; arp saddr ip @local4 drop
    chain guard        RA/redirect drop; NA for a target not (port . target)
                       in @src6 drop; (port . saddr) in @src6 (and ARP's
                       sender) return; DAD from :: return; anything else drop
    chain forward      hook forward: neither multicast nor broadcast accept;
                       multicast and broadcast to a port in @closed (an
                       isolated pod) drop, except ARP and ND

The order is the cost: a packet of an established flow between two pods
meets two set lookups in all (its own source in each prerouting chain) and
two constant compares (``ct state`` in forward, ``meta pkttype`` in the
bridge's forward); the rules every packet passes come first, the rare ones
(ICMPv6, foreign sources, flooding) after them or in chains of their own.

A pod is identified by its interface: a routed pod's veth, or for a bridge,
its port (checked in the bridge table, so the inet table can key on
(bridge . source) once the source is proven).  Dispatch is one verdict-map
lookup per packet whatever the pod count.  podwall only subtracts: its base
chains end in accept (which ends only its own chain) or drop (which is final).

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import dataplane, model, names
from firewall_plugin.nft import expr, keys
from firewall_plugin.nft import netlink as nl
from firewall_plugin.nft import objects as obj
from firewall_plugin.nft.objects import Element, SetSpec

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

TABLE = "podwall"
INET, BRIDGE = nl.NFPROTO_INET, nl.NFPROTO_BRIDGE
#: changes whenever the skeleton below changes: a table of another version is rebuilt
VERSION = "4"
HOOK_PREROUTING, HOOK_INPUT, HOOK_FORWARD = 0, 1, 2
PRIORITY_RAW = -300  # before conntrack (-200): spoofed packets never create entries
PRIORITY_FILTER = -5  # before iptables' filter chains (0), nft or legacy
PRIORITY_BRIDGE = -300  # before br_netfilter hands bridged frames to the IP hooks (0)
SUFFIX = {"ipv4": "4", "ipv6": "6"}
NFPROTO = {"ipv4": 2, "ipv6": 10}
ETHERTYPE = {"ipv4": 0x0800, "ipv6": 0x86DD, "arp": 0x0806}
ICMPV6 = 58
RA, REDIRECT, RS, NS, NA, MLD1, MLD2 = 134, 137, 133, 135, 136, 131, 143

IFNAME, IP4, IP6 = obj.TYPE_IFNAME, obj.TYPE_IPADDR, obj.TYPE_IP6ADDR
ADDR = {"ipv4": IP4, "ipv6": IP6}
INET_SETS = (
    SetSpec("ifaces", (IFNAME,)),
    SetSpec("podifs", (IFNAME,)),
    SetSpec("links", (IFNAME, IFNAME)),
    SetSpec("owned4", (IFNAME, IP4)),
    SetSpec("owned6", (IFNAME, IP6)),
    SetSpec("local4", (IP4,)),
    SetSpec("local6", (IP6,)),
    SetSpec("from4", (IFNAME, IP4), verdicts=True),
    SetSpec("from6", (IFNAME, IP6), verdicts=True),
    SetSpec("to4", (IFNAME, IP4), verdicts=True),
    SetSpec("to6", (IFNAME, IP6), verdicts=True),
)
BRIDGE_SETS = (
    SetSpec("ports", (IFNAME,)),
    SetSpec("src4", (IFNAME, IP4)),
    SetSpec("src6", (IFNAME, IP6)),
    SetSpec("local4", (IP4,)),
    SetSpec("local6", (IP6,)),
    SetSpec("closed", (IFNAME,)),
)
R = expr.REG32_00  # first 32-bit register: concatenations start here


def chain_name(name: str, family: model.Family) -> str:
    """The nft name of a model chain of ``family`` (one table holds both)."""
    return f"{name}-{SUFFIX[family]}"


def table_comment(state_dir: str) -> str:
    return f"podwall layout {VERSION}; state {state_dir}"


def parse_table_comment(text: str) -> tuple[str, str]:
    """(layout version, state folder) of a podwall table comment."""
    version = state = ""
    for part in text.split(";"):
        word, _, value = part.strip().partition(" ")
        if word == "podwall" and value.startswith("layout "):
            version = value.removeprefix("layout ")
        elif word == "state":
            state = value
    return version, state


# --- expression pieces -----------------------------------------------------------


def _l3(family: model.Family, field: str, dreg: int, *, bridge: bool = False) -> bytes:
    """Check the packet is ``family`` and load its source or destination."""
    if bridge:
        check = expr.payload(expr.BASE_LL, 12, 2) + expr.cmp(
            expr.CMP_EQ, ETHERTYPE[family].to_bytes(2, "big")
        )
    else:
        check = expr.match_nfproto(NFPROTO[family])
    if family == "ipv4":
        load = expr.payload(expr.BASE_NETWORK, 12 if field == "saddr" else 16, 4, dreg)
    else:
        load = expr.payload(expr.BASE_NETWORK, 8 if field == "saddr" else 24, 16, dreg)
    return check + load


def _addr_width(family: model.Family) -> int:
    return 4 if family == "ipv4" else 16


def _iface_addr(
    set_name: str,
    family: model.Family,
    field: str,
    *,
    meta_key: int,
    invert: bool = False,
    vmap: bool = False,
    bridge: bool = False,
) -> bytes:
    """``<iif|oif>name . ip <field> @set`` (or ``!=``, or ``vmap``)."""
    loads = _l3(family, field, R + 4, bridge=bridge) + expr.meta(meta_key, R)
    dreg = expr.REG_VERDICT if vmap else None
    return loads + expr.lookup(set_name, R, dreg=dreg, invert=invert)


def _in_set(set_name: str, load: bytes, *, invert: bool = False) -> bytes:
    return load + expr.lookup(set_name, expr.REG_1, invert=invert)


def _icmp6(low: int, high: int | None = None, *, bridge: bool = False) -> bytes:
    """ICMPv6 of type ``low`` (to ``high``).  In the bridge family ``meta
    nfproto`` says "bridge": the ether type tells IPv6 there."""
    family = _ether("ipv6") if bridge else expr.match_nfproto(NFPROTO["ipv6"])
    check = family + expr.match_l4proto(ICMPV6) + expr.payload(expr.BASE_TRANSPORT, 0, 1)
    if high is None or high == low:
        return check + expr.cmp(expr.CMP_EQ, bytes((low,)))
    return check + expr.cmp(expr.CMP_GTE, bytes((low,))) + expr.cmp(expr.CMP_LTE, bytes((high,)))


def _hoplimit_255() -> bytes:
    return expr.payload(expr.BASE_NETWORK, 7, 1) + expr.cmp(expr.CMP_EQ, b"\xff")


def _unspecified6() -> bytes:
    return (
        expr.match_nfproto(NFPROTO["ipv6"])
        + expr.payload(expr.BASE_NETWORK, 8, 16)
        + expr.cmp(expr.CMP_EQ, bytes(16))
    )


def _iif_in(set_name: str, *, invert: bool = False) -> bytes:
    return _in_set(set_name, expr.meta(expr.META_IIFNAME), invert=invert)


def _links() -> bytes:
    """``iifname . oifname @links``: the packet stays on one bridge."""
    return (
        expr.meta(expr.META_IIFNAME, R)
        + expr.meta(expr.META_OIFNAME, R + 4)
        + expr.lookup("links", R)
    )


ACCEPT = expr.immediate_verdict(expr.ACCEPT)
DROP = expr.immediate_verdict(expr.DROP)
RETURN = expr.immediate_verdict(expr.RETURN)


def _goto(chain: str) -> bytes:
    return expr.immediate_verdict(expr.GOTO, chain)


# --- the skeleton ----------------------------------------------------------------

Rule = tuple[bytes, str]  # (expressions, comment)


def _own_source(set_name: str, family: model.Family, *, bridge: bool = False) -> bytes:
    """``iifname . ip saddr @set`` (``@set6``: and not ICMPv6, which the
    guards look at first)."""
    own = _iface_addr(set_name, family, "saddr", meta_key=expr.META_IIFNAME, bridge=bridge)
    return own if family == "ipv4" else _not_icmp6() + own


def inet_prerouting() -> list[Rule]:
    return [
        *(
            (_own_source(f"owned{SUFFIX[family]}", family) + ACCEPT, "a pod's own source")
            for family in model.FAMILIES
        ),
        (_iif_in("ifaces") + _goto("guard"), "routed pod interface: its source decides"),
        *(
            (
                _l3(family, "saddr", expr.REG_1)
                + expr.lookup(f"local{SUFFIX[family]}", expr.REG_1)
                + _iface_addr(f"owned{SUFFIX[family]}", family, "saddr", meta_key=expr.META_IIFNAME,
                              invert=True)
                + DROP,
                "an address of a pod from another interface",
            )
            for family in model.FAMILIES
        ),
    ]  # fmt: skip


def _foreign_target(set_name: str, *, bridge: bool = False) -> bytes:
    """A neighbour advertisement whose target address is not one the
    interface (or port) owns: ``iifname . nd target != @set``."""
    target = expr.payload(expr.BASE_TRANSPORT, 8, 16, R + 4) + expr.meta(expr.META_IIFNAME, R)
    return _icmp6(NA, bridge=bridge) + target + expr.lookup(set_name, R, invert=True)


def _not_icmp6() -> bytes:
    return expr.meta(expr.META_L4PROTO) + expr.cmp(expr.CMP_NEQ, bytes((ICMPV6,)))


def inet_guard() -> list[Rule]:
    own6 = _iface_addr("owned6", "ipv6", "saddr", meta_key=expr.META_IIFNAME)
    return [
        (_icmp6(RA) + DROP, "router advertisement from a pod"),
        (_icmp6(REDIRECT) + DROP, "redirect from a pod"),
        (_foreign_target("owned6") + DROP, "neighbour advertisement for another's address"),
        (own6 + RETURN, "own source"),
        (_unspecified6() + _icmp6(NS) + RETURN, "duplicate address detection"),
        (_unspecified6() + _icmp6(MLD2) + RETURN, "duplicate address detection"),
        (DROP, "spoofed source from a pod interface"),
    ]


def inet_icmp6() -> list[Rule]:
    """Forwarded ICMPv6 (jumped to from forward): what pods may send on a link."""
    return [
        (_icmp6(RA) + _iif_in("podifs") + DROP, "router advertisement from a pod"),
        (_icmp6(REDIRECT) + _iif_in("podifs") + DROP, "redirect from a pod"),
        (_icmp6(NS, NA) + _hoplimit_255() + _links() + ACCEPT, "neighbour discovery on the link"),
        (_icmp6(MLD1) + _links() + ACCEPT, "multicast listener report on the link"),
        (_icmp6(MLD2) + _links() + ACCEPT, "multicast listener report on the link"),
        (_icmp6(NS, NA) + _iif_in("podifs") + DROP, "neighbour discovery off the link"),
    ]


def inet_forward() -> list[Rule]:
    icmp6 = expr.match_nfproto(NFPROTO["ipv6"]) + expr.match_l4proto(ICMPV6)
    rules = [
        (expr.match_ct_state(expr.CT_ESTABLISHED) + ACCEPT, "replies"),
        (icmp6 + expr.immediate_verdict(expr.JUMP, "icmp6"), "ICMPv6: link control"),
    ]
    for family in model.FAMILIES:
        suffix = SUFFIX[family]
        vmap = _iface_addr(f"from{suffix}", family, "saddr", meta_key=expr.META_IIFNAME, vmap=True)
        rules.append((vmap, "egress dispatch"))
    related = expr.match_ct_state(expr.CT_RELATED) + _iif_in("podifs", invert=True)
    rules.append((related + ACCEPT, "related, not from a pod"))
    for family in model.FAMILIES:
        suffix = SUFFIX[family]
        vmap = _iface_addr(f"to{suffix}", family, "daddr", meta_key=expr.META_OIFNAME, vmap=True)
        rules.append((vmap, "ingress dispatch"))
    return rules


def inet_input() -> list[Rule]:
    rules = [
        (expr.match_ct_state(expr.CT_ESTABLISHED) + ACCEPT, "replies"),
        (_iif_in("podifs", invert=True) + ACCEPT, "not from a pod"),
        (_icmp6(RA) + DROP, "router advertisement from a pod"),
        (_icmp6(REDIRECT) + DROP, "redirect from a pod"),
        (_icmp6(NS, NA) + _hoplimit_255() + ACCEPT, "neighbour discovery"),
        (_icmp6(NS, NA) + DROP, "neighbour discovery without hop limit 255"),
        (_icmp6(RS) + ACCEPT, "router solicitation"),
        (_icmp6(MLD1) + ACCEPT, "multicast listener report"),
        (_icmp6(MLD2) + ACCEPT, "multicast listener report"),
    ]
    for family in model.FAMILIES:
        suffix = SUFFIX[family]
        vmap = _iface_addr(f"from{suffix}", family, "saddr", meta_key=expr.META_IIFNAME, vmap=True)
        rules.append((vmap, "egress to the node"))
    return rules


def _ether(kind: str) -> bytes:
    return expr.payload(expr.BASE_LL, 12, 2) + expr.cmp(
        expr.CMP_EQ, ETHERTYPE[kind].to_bytes(2, "big")
    )


def _arp_sender(dreg: int) -> bytes:
    return _ether("arp") + expr.payload(expr.BASE_NETWORK, 14, 4, dreg)


def bridge_prerouting() -> list[Rule]:
    return [
        *(
            (_own_source(f"src{SUFFIX[family]}", family, bridge=True) + ACCEPT,
             "a pod port's own source")
            for family in model.FAMILIES
        ),
        (_iif_in("ports") + _goto("guard"), "pod port: its source decides"),
        (_l3("ipv4", "saddr", expr.REG_1, bridge=True) + expr.lookup("local4", expr.REG_1) + DROP,
         "an address of a pod from a port not its own"),
        (_l3("ipv6", "saddr", expr.REG_1, bridge=True) + expr.lookup("local6", expr.REG_1) + DROP,
         "an address of a pod from a port not its own"),
        (_arp_sender(expr.REG_1) + expr.lookup("local4", expr.REG_1) + DROP,
         "an address of a pod claimed by ARP from a port not its own"),
    ]  # fmt: skip


def bridge_guard() -> list[Rule]:
    arp = _arp_sender(R + 4) + expr.meta(expr.META_IIFNAME, R) + expr.lookup("src4", R)
    probe = _arp_sender(expr.REG_1) + expr.cmp(expr.CMP_EQ, bytes(4))
    unspecified = _ether("ipv6") + expr.payload(expr.BASE_NETWORK, 8, 16)
    unspecified += expr.cmp(expr.CMP_EQ, bytes(16))
    return [
        (_icmp6(RA, bridge=True) + DROP, "router advertisement from a pod"),
        (_icmp6(REDIRECT, bridge=True) + DROP, "redirect from a pod"),
        (_foreign_target("src6", bridge=True) + DROP,
         "neighbour advertisement for another's address"),
        (_iface_addr("src6", "ipv6", "saddr", meta_key=expr.META_IIFNAME, bridge=True) + RETURN,
         "own source"),
        (arp + RETURN, "own address in ARP"),
        (probe + RETURN, "ARP probe"),
        (unspecified + _icmp6(NS, bridge=True) + RETURN, "duplicate address detection"),
        (unspecified + _icmp6(MLD2, bridge=True) + RETURN, "duplicate address detection"),
        (DROP, "spoofed source or not IP from a pod port"),
    ]  # fmt: skip


def bridge_forward() -> list[Rule]:
    flooded = (
        expr.meta(expr.META_PKTTYPE) + expr.cmp(expr.CMP_GTE, b"\1") + expr.cmp(expr.CMP_LTE, b"\2")
    )
    unicast = expr.meta(expr.META_PKTTYPE) + expr.in_range(b"\1", b"\2", negate=True)
    return [
        (unicast + ACCEPT, "neither multicast nor broadcast"),
        (_oif_in("closed", invert=True) + ACCEPT, "not to an isolated pod"),
        (_ether("arp") + ACCEPT, "ARP"),
        (_icmp6(NS, NA, bridge=True) + ACCEPT, "neighbour discovery"),
        (flooded + DROP, "multicast or broadcast to an isolated pod"),
    ]


def _oif_in(set_name: str, *, invert: bool = False) -> bytes:
    return _in_set(set_name, expr.meta(expr.META_OIFNAME), invert=invert)


def rule_digest(expressions: bytes) -> bytes:
    """8 bytes naming a rule's expressions (kept in its user data): the
    agent compares them to find rules another tool changed."""
    return names.short_digest(expressions)


def _tag_drops(
    rules: list[Rule], log: model.LogSpec | None, tags: dict[str, tuple[str, ...]] | None = None
) -> list[Rule]:
    """Every drop counted under a tag (its comment starts with it) and, with
    ``log``, logged first by a rate-limited rule of the same matches."""
    out: list[Rule] = []
    for expressions, note in rules:
        if not expressions.endswith(DROP):
            out.append((expressions, note))
            continue
        matches = expressions[: -len(DROP)]
        isolation = note.startswith("multicast")
        tier = "isolation" if isolation else "spoofing"
        policy = "multicast isolation" if isolation else "anti-spoofing"
        direction = "ingress" if isolation else "egress"
        fields = (direction, "deny", tier, policy, note, "")
        tag = names.log_tag(*fields)
        if tags is not None:
            tags[tag] = fields
        tagged = f"{tag} {note}"
        if log is not None:
            limit = expr.limit(rate=log.rate, per_seconds=log.per_seconds, burst=log.burst)
            logging = expr.log(group=log.group, prefix=tag, snaplen=int(dataplane.NFLOG_SIZE))
            out.append((matches + limit + logging, tagged))
        out.append((matches + expr.counter() + DROP, tagged))
    return out


def skeleton_rules(
    log: model.LogSpec | None = None, tags: dict[str, tuple[str, ...]] | None = None
) -> dict[tuple[int, str], list[Rule]]:
    """The rules of every skeleton chain, as written ((table family, chain) →
    rules): ``skeleton`` writes them, the agent's ``verify`` compares with them."""
    chains = {
        (INET, "guard"): inet_guard(),
        (INET, "prerouting"): inet_prerouting(),
        (INET, "forward"): inet_forward(),
        (INET, "icmp6"): inet_icmp6(),
        (INET, "input"): inet_input(),
        (BRIDGE, "guard"): bridge_guard(),
        (BRIDGE, "prerouting"): bridge_prerouting(),
        (BRIDGE, "forward"): bridge_forward(),
    }
    return {key: _tag_drops(rules, log, tags) for key, rules in chains.items()}


def _fill(batch: nl.Batch, family: int, chain: str, rules: Iterable[Rule]) -> None:
    for expressions, note in rules:
        obj.add_rule(
            batch, family, TABLE, chain, expressions,
            comment=names.comment(note), digest=rule_digest(expressions),
        )  # fmt: skip


def skeleton(batch: nl.Batch, *, state_dir: str, log: model.LogSpec | None = None) -> None:
    """Both tables from scratch (any old ones destroyed first), with their
    sets empty: one part of one transaction.  ``log``: log the drops (the
    agent's setting; the plugin never logs)."""
    comment = table_comment(state_dir)
    for family, sets in ((INET, INET_SETS), (BRIDGE, BRIDGE_SETS)):
        obj.destroy_table(batch, family, TABLE)
        obj.add_table(batch, family, TABLE, comment=comment)
        for spec in sets:
            obj.add_set(batch, family, TABLE, spec)
    obj.add_chain(batch, INET, TABLE, "guard")
    obj.add_chain(batch, INET, TABLE, "icmp6")
    obj.add_chain(batch, INET, TABLE, "prerouting", hook=(HOOK_PREROUTING, PRIORITY_RAW))
    obj.add_chain(batch, INET, TABLE, "forward", hook=(HOOK_FORWARD, PRIORITY_FILTER))
    obj.add_chain(batch, INET, TABLE, "input", hook=(HOOK_INPUT, PRIORITY_FILTER))
    obj.add_chain(batch, BRIDGE, TABLE, "guard")
    obj.add_chain(batch, BRIDGE, TABLE, "prerouting", hook=(HOOK_PREROUTING, PRIORITY_BRIDGE))
    obj.add_chain(batch, BRIDGE, TABLE, "forward", hook=(HOOK_FORWARD, PRIORITY_BRIDGE))
    for (family, chain), rules in skeleton_rules(log).items():
        _fill(batch, family, chain, rules)


# --- endpoints: their set elements -----------------------------------------------

#: one identity element: (table family, set, key, verdict (code, chain) or None)
Item = tuple[int, str, bytes, "tuple[int, str] | None"]


def endpoint_items(endpoint: model.Endpoint, *, shared: bool = True) -> list[Item]:
    """Every identity element of ``endpoint``; ``shared``: also those its
    bridge shares with other pods (kept while any pod uses the bridge)."""
    items: list[Item] = []
    path = keys.ifname(endpoint.path)
    if endpoint.bridge:
        port = keys.ifname(endpoint.interface)
        items.append((BRIDGE, "ports", port, None))
        if not endpoint.ingress_open:
            items.append((BRIDGE, "closed", port, None))
        if shared:
            items.append((INET, "podifs", path, None))
            items.append((INET, "links", path + path, None))
    else:
        items.append((INET, "ifaces", path, None))
        items.append((INET, "podifs", path, None))
    for family in model.FAMILIES:
        suffix = SUFFIX[family]
        egress = chain_name(names.egress_chain(endpoint.container_id, endpoint.ifname), family)
        ingress = chain_name(names.ingress_chain(endpoint.container_id, endpoint.ifname), family)
        for source in endpoint.sources(family):
            key = keys.concat(path, keys.address(source))
            items.append((INET, f"owned{suffix}", key, None))
            items.append((INET, f"from{suffix}", key, (expr.JUMP, egress)))
            items.append((INET, f"to{suffix}", key, (expr.JUMP, ingress)))
            if endpoint.bridge:
                port_key = keys.concat(keys.ifname(endpoint.interface), keys.address(source))
                items.append((BRIDGE, f"src{suffix}", port_key, None))
        for address in endpoint.addresses_of(family):
            items.append((INET, f"local{suffix}", keys.address(address), None))
            if endpoint.bridge:
                items.append((BRIDGE, f"local{suffix}", keys.address(address), None))
    return items


def add_items(batch: nl.Batch, items: Iterable[Item]) -> None:
    for (family, set_name), elements in _grouped(items).items():
        obj.add_elements(batch, family, TABLE, set_name, elements)


def remove_items(batch: nl.Batch, items: Iterable[Item]) -> None:
    for (family, set_name), elements in _grouped(items).items():
        obj.destroy_elements(batch, family, TABLE, set_name, elements)


def _grouped(items: Iterable[Item]) -> dict[tuple[int, str], list[Element]]:
    grouped: dict[tuple[int, str], list[Element]] = {}
    for family, set_name, key, verdict in items:
        grouped.setdefault((family, set_name), []).append(Element(key, verdict))
    return grouped
