"""A tiny model of netfilter for compiled nodes: walk one new connection's
first packet through the sender's egress chain (when the sender is an
endpoint of the node) and the receiver's ingress chain (when the receiver
is), and the chains they go to, matching ipsets the way the kernel does
(``hash:net`` takes the most specific entry, a ``nomatch`` entry means no
match).  Only what the compiler emits is modelled; anything else fails
loudly.  How packets reach those chains (identity, dispatch) is the
backends' and is tested against the kernel."""

from __future__ import annotations

import ipaddress

from firewall_operator.compiler import CompiledNode
from firewall_plugin import model, names

Verdict = str  # "return" | "drop"


def _in_set(ipset: model.IPSet, ip: str, proto: str, port: int) -> bool:
    if ipset.kind == "hash:ip":
        return ip in ipset.entries
    if ipset.kind == "hash:ip,port":
        return f"{ip},{proto}:{port}" in ipset.entries
    assert ipset.kind == "hash:net", ipset.kind
    address = ipaddress.ip_address(ip)
    best: tuple[int, bool] | None = None
    for entry in ipset.entries:
        net, _, flag = entry.partition(" ")
        network = ipaddress.ip_network(net)
        inside = address.version == network.version and address in network
        if inside and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, flag != "nomatch")
    return bool(best and best[1])


def _address_matches(rule_address: str | None, ip: str) -> bool:
    if rule_address is None:
        return True
    return ipaddress.ip_address(ip) in ipaddress.ip_network(rule_address)


def _matches(state: model.FamilyState, rule: model.Rule, packet: dict[str, object]) -> bool:
    src, dst, proto, port = packet["src"], packet["dst"], packet["proto"], packet["port"]
    assert isinstance(src, str) and isinstance(dst, str) and isinstance(proto, str)
    assert isinstance(port, int)
    if not _address_matches(rule.source, src) or not _address_matches(rule.destination, dst):
        return False
    if rule.protocol is not None and rule.protocol != proto:
        return False
    for match in rule.matches:
        options = dict(match.options)
        if match.module == "conntrack":
            return False  # a new, valid connection: neither ESTABLISHED nor INVALID
        if match.module == "addrtype":
            if not packet["local"]:
                return False
        elif match.module == "set":
            name, flags = options["match-set"].split(" ")
            ip = src if flags == "src" else dst
            if not _in_set(state.sets[name], ip, proto, port):
                return False
        elif match.module in ("tcp", "udp", "sctp"):
            low, _, high = options["dport"].partition(":")
            if not int(low) <= port <= int(high or low):
                return False
        else:
            raise AssertionError(f"unmodelled match {match.module}")
    return True


def run_chain(state: model.FamilyState, name: str, packet: dict[str, object]) -> Verdict:
    """Run a chain; "drop" ends everything, "return" goes back to the caller."""
    for rule in state.chains[name].rules:
        if not _matches(state, rule, packet):
            continue
        if rule.target in ("DROP", "REJECT"):
            return "drop"
        if rule.target == "RETURN":
            return "return"
        if rule.target in ("LOG", "NFLOG"):
            continue
        result = run_chain(state, rule.target, packet)
        if result == "drop" or rule.goto:
            return result
    return "return"


def forward(
    compiled: CompiledNode,
    family: model.Family,
    *,
    src: str,
    dst: str,
    proto: str,
    port: int,
    local: bool = False,
) -> bool:
    """True when podwall lets the connection's first packet through the node."""
    packet: dict[str, object] = {
        "src": src,
        "dst": dst,
        "proto": proto,
        "port": port,
        "local": local,
    }
    state = compiled.family(family)
    for endpoint in compiled.endpoints:
        if src in endpoint.addresses_of(family):
            chain = names.egress_chain(endpoint.container_id, endpoint.ifname)
            if run_chain(state, chain, packet) == "drop":
                return False
    for endpoint in compiled.endpoints:
        if dst in endpoint.addresses_of(family):
            chain = names.ingress_chain(endpoint.container_id, endpoint.ifname)
            if run_chain(state, chain, packet) == "drop":
                return False
    return True
