"""The ruleset model rendered as nftables: policy chains' rules and peer sets.

``rule(rule, family)`` turns one ``model.Rule`` (written in iptables' terms:
matches by module and option) into nf_tables expressions; ``peer_set``
turns a ``model.IPSet`` into a named set and its elements (``hash:ip`` → a
set of addresses, ``hash:net`` with ``nomatch`` entries → an interval set
holding exactly the CIDRs minus their exceptions, ``hash:ip,port`` →
``address . protocol . port``).  Only the vocabulary podwall's chains use is
known; anything else is a ValueError naming it.  Every drop and reject
carries a counter (the agent reads them for its drop metrics).

Pure: no I/O.
"""

from __future__ import annotations

from operator import attrgetter

from firewall_plugin import addresses, model
from firewall_plugin.nft import expr, keys, layout
from firewall_plugin.nft import objects as obj

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

CT_BITS = {
    "INVALID": expr.CT_INVALID,
    "ESTABLISHED": expr.CT_ESTABLISHED,
    "RELATED": expr.CT_RELATED,
    "NEW": expr.CT_NEW,
}
TERMINAL = {"RETURN": expr.RETURN, "DROP": expr.DROP, "ACCEPT": expr.ACCEPT}
COUNTED = frozenset({"DROP", "REJECT"})
LIMIT_UNITS = {"sec": 1, "second": 1, "min": 60, "minute": 60, "hour": 3600, "day": 86400}
R = expr.REG32_00


def _address(family: model.Family, field: str, value: str) -> bytes:
    """``ip saddr|daddr <address or CIDR>``."""
    bits, number, prefix = addresses.value_of(value)
    width = bits // 8
    offset = (
        (12 if field == "saddr" else 16) if family == "ipv4" else (8 if field == "saddr" else 24)
    )
    load = expr.match_nfproto(layout.NFPROTO[family]) + expr.payload(
        expr.BASE_NETWORK, offset, width
    )
    if prefix == bits:
        return load + expr.cmp(expr.CMP_EQ, number.to_bytes(width, "big"))
    mask = ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)
    network = (number & mask).to_bytes(width, "big")
    return load + expr.bitwise(mask.to_bytes(width, "big")) + expr.cmp(expr.CMP_EQ, network)


def _interface(key: int, name: str) -> bytes:
    if name.endswith("+"):
        prefix = name[:-1].encode()
        return expr.meta(key) + expr.cmp(expr.CMP_EQ, prefix) if prefix else b""
    return expr.meta(key) + expr.cmp(expr.CMP_EQ, expr.ifname(name))


def _ports(value: str, *, negate: bool) -> bytes:
    low, _, high = value.partition(":")
    first, last = int(low), int(high or low)
    if not negate:
        return expr.match_port_range(2, first, last)
    load = expr.payload(expr.BASE_TRANSPORT, 2, 2)
    if first == last:
        return load + expr.cmp(expr.CMP_NEQ, first.to_bytes(2, "big"))
    return load + expr.expression(
        "range",
        *_range_attrs(first.to_bytes(2, "big"), last.to_bytes(2, "big")),
    )


def _range_attrs(low: bytes, high: bytes) -> tuple[bytes, ...]:
    from firewall_plugin.nft import netlink as nl

    return (
        nl.attr(1, nl.be32(expr.REG_1)),
        nl.attr(2, nl.be32(1)),  # NFT_RANGE_NEQ
        nl.nest(3, expr.value(low)),
        nl.nest(4, expr.value(high)),
    )


def _set_match(family: model.Family, value: str, *, negate: bool) -> bytes:
    name, _, flags = value.partition(" ")
    if flags in ("src", "dst"):
        field = "saddr" if flags == "src" else "daddr"
        offset = (
            (12 if field == "saddr" else 16)
            if family == "ipv4"
            else (8 if field == "saddr" else 24)
        )
        width = 4 if family == "ipv4" else 16
        load = expr.match_nfproto(layout.NFPROTO[family]) + expr.payload(
            expr.BASE_NETWORK, offset, width
        )
        return load + expr.lookup(name, expr.REG_1, invert=negate)
    if flags == "dst,dst":
        width = 4 if family == "ipv4" else 16
        offset = 16 if family == "ipv4" else 24
        loads = (
            expr.match_nfproto(layout.NFPROTO[family])
            + expr.payload(expr.BASE_NETWORK, offset, width, R)
            + expr.meta(expr.META_L4PROTO, R + width // 4)
            + expr.payload(expr.BASE_TRANSPORT, 2, 2, R + width // 4 + 1)
        )
        return loads + expr.lookup(name, R, invert=negate)
    raise ValueError(f"set match {value!r}: nftables rendering knows src, dst and dst,dst")


def _match(family: model.Family, match: model.Match) -> bytes:
    out = b""
    for option, value in match.options:
        negate = option.startswith("!")
        name = option.removeprefix("!")
        if match.module == "conntrack" and name == "ctstate":
            bits = 0
            for state in value.split(","):
                bits |= CT_BITS[state]
            out += expr.match_ct_state(bits, negate=negate)
        elif match.module == "set" and name == "match-set":
            out += _set_match(family, value, negate=negate)
        elif match.module in ("tcp", "udp", "sctp") and name == "dport":
            out += _ports(value, negate=negate)
        elif match.module == "icmp6" and name == "icmpv6-type" and not negate:
            out += expr.payload(expr.BASE_TRANSPORT, 0, 1) + expr.cmp(
                expr.CMP_EQ, bytes((int(value),))
            )
        elif match.module == "limit" and name == "limit" and not negate:
            number, _, unit = value.partition("/")
            burst = int(dict(match.options).get("limit-burst", "5"))
            seconds = LIMIT_UNITS[unit]
            out += expr.limit(rate=int(number), per_seconds=seconds, burst=burst)
        elif match.module == "limit" and name == "limit-burst":
            continue  # read with "limit"
        elif match.module == "hl" and name == "hl-eq" and not negate:
            out += expr.payload(expr.BASE_NETWORK, 7, 1) + expr.cmp(
                expr.CMP_EQ, bytes((int(value),))
            )
        else:
            raise ValueError(f"match -m {match.module} --{option}: not rendered for nftables")
    return out


def _target(rule: model.Rule, family: model.Family) -> bytes:
    options = dict(rule.target_options)
    counted = expr.counter() if rule.target in COUNTED else b""
    if rule.target in TERMINAL:
        return counted + expr.immediate_verdict(TERMINAL[rule.target])
    if rule.target == "REJECT":
        how = options.get("reject-with", "")
        if how == "tcp-reset":
            return counted + expr.reject(expr.REJECT_TCP_RST)
        return counted + expr.reject(expr.REJECT_ICMPX, expr.ICMPX_PORT_UNREACH)
    if rule.target == "NFLOG":
        group = int(options.get("nflog-group", "0"))
        snaplen = int(options.get("nflog-size", "0"))
        return expr.log(group=group, prefix=options.get("nflog-prefix", ""), snaplen=snaplen)
    if rule.target == "LOG":
        return expr.log(group=0, prefix=options.get("log-prefix", ""))
    if rule.target.startswith("PODWALL"):
        code = expr.GOTO if rule.goto else expr.JUMP
        return expr.immediate_verdict(code, layout.chain_name(rule.target, family))
    raise ValueError(f"target {rule.target}: not rendered for nftables")


#: a Rule's fields but its comment (the comment goes into the rule's user
#: data, never into its expressions), as one tuple
_EXPRESSION_FIELDS = attrgetter(*(name for name in model.Rule._fields if name != "comment"))
#: encoded expressions by (family, every field of the rule but its comment):
#: pods' chains repeat the same rules under other comments (the bench
#: workload's 8,573 rules are 2,019 distinct ones); bounded, emptied when full
_ENCODED: dict[tuple[object, ...], bytes] = {}
#: encoded matches by (family, match): the rules above differ in a few of theirs
_MATCHES: dict[tuple[model.Family, model.Match], bytes] = {}
ENCODED_LIMIT = 1 << 15


def rule(rule: model.Rule, family: model.Family) -> bytes:
    """The expressions of ``rule`` in a chain of ``family`` (memoized: a rule
    equal to one encoded before but for its comment costs a dict lookup).
    The expressions depend on every field of the rule but its comment."""
    key = (family, _EXPRESSION_FIELDS(rule))
    encoded = _ENCODED.get(key)
    if encoded is None:
        if len(_ENCODED) >= ENCODED_LIMIT:
            _ENCODED.clear()
        encoded = _ENCODED[key] = _encode_rule(rule, family)
    return encoded


def _encode_rule(rule: model.Rule, family: model.Family) -> bytes:
    out = b""
    if rule.source:
        out += _address(family, "saddr", rule.source)
    if rule.destination:
        out += _address(family, "daddr", rule.destination)
    if rule.in_interface:
        out += _interface(expr.META_IIFNAME, rule.in_interface)
    if rule.out_interface:
        out += _interface(expr.META_OIFNAME, rule.out_interface)
    if rule.protocol:
        out += expr.match_l4proto(keys.PROTOCOL_NUMBERS[rule.protocol])
    for match in rule.matches:
        key = (family, match)
        encoded = _MATCHES.get(key)
        if encoded is None:
            if len(_MATCHES) >= ENCODED_LIMIT:
                _MATCHES.clear()
            encoded = _MATCHES[key] = _match(family, match)
        out += encoded
    return out + _target(rule, family)


def chain_rules(chain: model.Chain, family: model.Family) -> list[tuple[bytes, str]]:
    """(expressions, comment) of every rule of ``chain``."""
    return [(rule(item, family), item.comment) for item in chain.rules]


def peer_set(ipset: model.IPSet) -> tuple[obj.SetSpec, list[obj.Element]]:
    """The nftables set holding ``ipset``'s members, and its elements."""
    address_type = layout.ADDR[ipset.family]
    if ipset.kind == "hash:ip":
        spec = obj.SetSpec(ipset.name, (address_type,))
        return spec, _members(ipset.entries, keys.address)
    if ipset.kind == "hash:net":
        spec = obj.SetSpec(ipset.name, (address_type,), interval=True)
        bits, ranges = keys.net_entries_to_ranges(ipset.entries)
        bits = 128 if ipset.family == "ipv6" else 32
        return spec, keys.interval_elements(bits, ranges)
    if ipset.kind == "hash:ip,port":
        spec = obj.SetSpec(
            ipset.name, (address_type, obj.TYPE_INET_PROTOCOL, obj.TYPE_INET_SERVICE)
        )
        return spec, _members(ipset.entries, _port_member_key)
    raise ValueError(f"set {ipset.name}: kind {ipset.kind} is not rendered for nftables")


#: elements of hash sets by entry, one memo per key function: a pod's
#: address is a member of many peer sets (the bench workload's 64k members
#: are 35k distinct entries); elements are immutable, so sets share them.
#: Bounded: a memo is emptied when full.
_MEMBERS: dict[Callable[[str], bytes], dict[str, obj.Element]] = {}
MEMBERS_LIMIT = 1 << 16


def _members(entries: Sequence[str], key_of: Callable[[str], bytes]) -> list[obj.Element]:
    """The elements of hash set ``entries``, keyed by ``key_of(entry)``."""
    memo = _MEMBERS.setdefault(key_of, {})
    if len(memo) + len(entries) > MEMBERS_LIMIT:
        memo.clear()
    out = []
    for entry in entries:
        element = memo.get(entry)
        if element is None:
            element = memo[entry] = obj.Element(key_of(entry))
        out.append(element)
    return out


def _port_member_key(entry: str) -> bytes:
    """The key of ``hash:ip,port`` entry ``ADDRESS,PROTOCOL:PORT``."""
    address, _, port = entry.partition(",")
    protocol, _, number = port.partition(":")
    return keys.port_key(address, protocol, int(number))


def element_keys(elements: Sequence[obj.Element]) -> frozenset[bytes]:
    return frozenset(element.key + (b"\x01" if element.end else b"") for element in elements)
