"""The iptables layout of identity and dispatch, built from ``model.Endpoint``s.

Per family, jumped from rule 1 of the built-in chains::

    FORWARD ─1─> PODWALL-FORWARD
        ESTABLISHED                                  → RETURN
        from X's interface (bridge: --physdev-in)    → goto PODWALL-F-X   (each endpoint)
        -s <a pod's IP> (not from its interface)     → DROP               (each pod IP)
        RELATED (not from a pod)                     → RETURN
        → PODWALL-TO
    PODWALL-F-X   RA/redirect → DROP; ND/MLD with hop limit 255, bridged → RETURN;
                  other ND → DROP; -s <X's source> → PODWALL-E-X then goto
                  PODWALL-TO (each source); anything else → DROP (spoofed)
    PODWALL-TO    -o <X's bridge or interface> -d <X's address> → PODWALL-I-X;
                  bridged multicast/broadcast to an isolated X → DROP
    INPUT ─1─> PODWALL-INPUT
        ESTABLISHED → RETURN; from X → goto PODWALL-N-X; -s <pod IP> → DROP
    PODWALL-N-X   RA/redirect → DROP; ND/RS/MLD → RETURN (ND only with hop limit
                  255); -s <X's source> → goto PODWALL-E-X; else → DROP

A pod's egress chain is chosen by the interface its packets arrive on, never
by the address they claim; its ingress chain by destination address and
output interface.  What arrives from the node itself never passes FORWARD,
and is never matched by a claimed source.  The policy chains (``PODWALL-I/E``)
are ``dataplane``'s; these chains only route packets to them.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import dataplane, model, names

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

ICMP6 = "ipv6-icmp"
RA, REDIRECT, RS, NS, NA = "134", "137", "133", "135", "136"
MLD_REPORTS = ("131", "143")
HOP_LIMIT_255 = model.Match("hl", (("hl-eq", "255"),))
BRIDGED = model.Match("physdev", (("physdev-is-bridged", ""),))
FLOODED = tuple(
    model.Match("pkttype", (("pkt-type", kind),)) for kind in ("broadcast", "multicast")
)
EXTRA_CHAINS = (names.TO_CHAIN,)


def _icmp6(kind: str) -> model.Match:
    return model.Match("icmp6", (("icmpv6-type", kind),))


def arrives_from(endpoint: model.Endpoint) -> tuple[str | None, tuple[model.Match, ...]]:
    """(``-i`` value, matches) selecting packets that arrive from ``endpoint``."""
    if endpoint.bridge:
        return None, (model.Match("physdev", (("physdev-in", endpoint.interface),)),)
    return endpoint.interface, ()


def _from(endpoint: model.Endpoint, target: str, note: str, *, goto: bool = False) -> model.Rule:
    interface, matches = arrives_from(endpoint)
    return model.Rule(target, note, in_interface=interface, matches=matches, goto=goto)


def _present(endpoints: Iterable[model.Endpoint], family: model.Family) -> list[model.Endpoint]:
    """The endpoints with a source address in ``family``, in key order."""
    found = [e for e in endpoints if e.interface and e.sources(family)]
    return sorted(found, key=lambda endpoint: endpoint.key)


def _spoofed_elsewhere(endpoints: list[model.Endpoint], family: model.Family) -> list[model.Rule]:
    """A pod's own IP arriving from anywhere but its own interface."""
    return [
        model.Rule(
            "DROP",
            names.comment(f"spoofed address: {address} of {endpoint.pod} from elsewhere"),
            source=address,
        )
        for endpoint in endpoints
        for address in endpoint.addresses_of(family)
    ]


def _neighbour_rules(endpoint: model.Endpoint, *, forward: bool) -> list[model.Rule]:
    """ICMPv6 from a pod: no router advertisement or redirect ever; neighbour
    discovery only with hop limit 255 and, when forwarded, only on the link
    (bridged); multicast listener reports only on the link."""
    pod = endpoint.pod
    rules = [
        model.Rule("DROP", names.comment(f"router advertisement: from {pod}"), protocol=ICMP6,
                   matches=(_icmp6(RA),)),
        model.Rule("DROP", names.comment(f"redirect: from {pod}"), protocol=ICMP6,
                   matches=(_icmp6(REDIRECT),)),
    ]  # fmt: skip
    link = (BRIDGED,) if forward else ()
    if forward and not endpoint.bridge:
        link_kinds: tuple[str, ...] = ()  # a routed pod has no link to share
    else:
        link_kinds = (NS, NA)
    for kind in link_kinds:
        rules.append(
            model.Rule("RETURN", names.comment(f"neighbour discovery of {pod}"), protocol=ICMP6,
                       matches=(_icmp6(kind), HOP_LIMIT_255, *link))
        )  # fmt: skip
    if not forward or endpoint.bridge:
        for kind in (*MLD_REPORTS, *(() if forward else (RS,))):
            rules.append(
                model.Rule("RETURN", names.comment(f"link-local control of {pod}"),
                           protocol=ICMP6, matches=(_icmp6(kind), *link))
            )  # fmt: skip
    for kind in (NS, NA):
        rules.append(
            model.Rule("DROP", names.comment(f"neighbour discovery off the link: {pod}"),
                       protocol=ICMP6, matches=(_icmp6(kind),))
        )  # fmt: skip
    return rules


def _tagged(
    rules: list[model.Rule],
    endpoint: model.Endpoint | None,
    log: model.LogSpec | None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> tuple[model.Rule, ...]:
    """Every drop of an identity chain tagged (counted as anti-spoofing, or
    multicast isolation) and, with ``log``, logged first."""
    pod = endpoint.pod if endpoint is not None else ""
    out: list[model.Rule] = []
    for rule in rules:
        tier = "isolation" if rule.comment.startswith("podwall: multicast") else "spoofing"
        direction = "ingress" if tier == "isolation" else "egress"
        out += dataplane.tag_drops(
            [rule], direction=direction, tier=tier, pod=pod, log=log, tags=tags
        )
    return tuple(out)


def from_chain(
    endpoint: model.Endpoint,
    family: model.Family,
    log: model.LogSpec | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> model.Chain:
    """``PODWALL-F-X``: what ``endpoint`` forwards."""
    rules = _neighbour_rules(endpoint, forward=True) if family == "ipv6" else []
    egress = names.egress_chain(endpoint.container_id, endpoint.ifname)
    for source in endpoint.sources(family):
        rules.append(model.Rule(egress, names.comment(f"egress {endpoint.pod}"), source=source))
        rules.append(
            model.Rule(names.TO_CHAIN, names.comment("ingress dispatch"), source=source, goto=True)
        )
    rules.append(model.Rule("DROP", names.comment(f"spoofed source: from {endpoint.pod}")))
    name = names.from_chain(endpoint.container_id, endpoint.ifname)
    return model.Chain(name, _tagged(rules, endpoint, log, tags))


def node_chain(
    endpoint: model.Endpoint,
    family: model.Family,
    log: model.LogSpec | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> model.Chain:
    """``PODWALL-N-X``: what ``endpoint`` sends to its own node."""
    rules = _neighbour_rules(endpoint, forward=False) if family == "ipv6" else []
    egress = names.egress_chain(endpoint.container_id, endpoint.ifname)
    for source in endpoint.sources(family):
        rules.append(
            model.Rule(egress, names.comment(f"egress {endpoint.pod} to its node"), source=source,
                       goto=True)
        )  # fmt: skip
    rules.append(model.Rule("DROP", names.comment(f"spoofed source: from {endpoint.pod}")))
    name = names.node_chain(endpoint.container_id, endpoint.ifname)
    return model.Chain(name, _tagged(rules, endpoint, log, tags))


def to_chain(
    endpoints: list[model.Endpoint],
    family: model.Family,
    log: model.LogSpec | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> model.Chain:
    """``PODWALL-TO``: the ingress dispatch."""
    rules = []
    for endpoint in endpoints:
        ingress = names.ingress_chain(endpoint.container_id, endpoint.ifname)
        note = names.comment(f"ingress {endpoint.pod}")
        for address in endpoint.sources(family):
            rules.append(
                model.Rule(ingress, note, destination=address, out_interface=endpoint.path)
            )
    for endpoint in endpoints:
        if endpoint.bridge and not endpoint.ingress_open:
            port = (("physdev-out", endpoint.interface), ("physdev-is-bridged", ""))
            for flooded in FLOODED:
                rules.append(
                    model.Rule("DROP", names.comment(f"multicast to isolated: {endpoint.pod}"),
                               matches=(model.Match("physdev", port), flooded))
                )  # fmt: skip
    return model.Chain(names.TO_CHAIN, _tagged(rules, None, log, tags))


def replies_comment(state_dir: str) -> str:
    """The comment of PODWALL-FORWARD's first rule: it names the node's state
    folder, so that a second podwall entry with another one is refused."""
    return names.comment(f"replies; state {state_dir}")


def owner(forward: Iterable[str]) -> str:
    """The state folder PODWALL-FORWARD's first rule names ('' when none)."""
    for spec in forward:
        marker = "replies; state "
        start = spec.find(marker)
        if start < 0:
            return ""
        end = spec.find('"', start)
        return spec[start + len(marker) : end if end > 0 else None].strip()
    return ""


def dispatch_chains(
    endpoints: Iterable[model.Endpoint],
    family: model.Family,
    *,
    state_dir: str,
    log: model.LogSpec | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> list[model.Chain]:
    """Every identity and dispatch chain of ``family``; none when no endpoint
    has an address of ``family`` (a node without pods carries no trace).
    ``log``: log the drops (the agent's setting; the plugin never logs);
    ``tags`` collects what the drops' tags stand for."""
    present = _present(endpoints, family)
    chains = shared_chains(present, family, state_dir=state_dir, log=log, tags=tags)
    for endpoint in present:
        chains += [
            from_chain(endpoint, family, log, tags),
            node_chain(endpoint, family, log, tags),
        ]
    return chains


def shared_chains(
    endpoints: Iterable[model.Endpoint],
    family: model.Family,
    *,
    state_dir: str,
    log: model.LogSpec | None = None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> list[model.Chain]:
    """PODWALL-FORWARD, PODWALL-INPUT and PODWALL-TO of ``family`` (the chains
    every endpoint's dispatch goes through); none without an endpoint."""
    present = _present(endpoints, family)
    if not present:
        return []
    replies = model.Rule("RETURN", replies_comment(state_dir), matches=(dataplane.ESTABLISHED,))
    forward = [replies]
    node = list(forward)
    for endpoint in present:
        target = names.from_chain(endpoint.container_id, endpoint.ifname)
        forward.append(_from(endpoint, target, names.comment(f"from {endpoint.pod}"), goto=True))
        target = names.node_chain(endpoint.container_id, endpoint.ifname)
        node.append(_from(endpoint, target, names.comment(f"from {endpoint.pod}"), goto=True))
    spoofed = list(_tagged(_spoofed_elsewhere(present, family), None, log, tags))
    forward += spoofed
    node += spoofed
    forward.append(
        model.Rule("RETURN", names.comment("related, not from a pod"), matches=(dataplane.RELATED,))
    )
    forward.append(model.Rule(names.TO_CHAIN, names.comment("ingress dispatch"), goto=True))
    return [
        model.Chain(names.FORWARD_CHAIN, tuple(forward)),
        model.Chain(names.INPUT_CHAIN, tuple(node)),
        to_chain(present, family, log, tags),
    ]


def endpoint_chain_names(container_id: str, ifname: str) -> list[str]:
    """The identity chains one attachment owns (its policy chains aside)."""
    return [names.from_chain(container_id, ifname), names.node_chain(container_id, ifname)]


def identity_tags(endpoints: Iterable[model.Endpoint]) -> dict[str, tuple[str, ...]]:
    """What the tags of every identity drop of ``endpoints`` stand for."""
    tags: dict[str, tuple[str, ...]] = {}
    for family in model.FAMILIES:
        dispatch_chains(endpoints, family, state_dir="", tags=tags)
    return tags
