"""The kernel layout both the plugin and the agent build (docs/design.md).

``FORWARD`` → ``PODWALL-FORWARD`` (rule 1) → per attachment ``-s IP -j
PODWALL-E-<h>`` for every endpoint, then ``-d IP -j PODWALL-I-<h>``.  Replies
(ESTABLISHED/RELATED) and, in IPv6, neighbour discovery return first.
Per-pod chains start by dropping INVALID packets; ingress chains then let the
node itself in (``addrtype LOCAL``).
podwall only subtracts: its chains end in DROP/REJECT or RETURN, never ACCEPT.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import model, names
from firewall_plugin.values import literal_aliases

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Literal

    from firewall_plugin.endpoints import EndpointRecord

    DenyAction = Literal["drop", "reject"]
    PodDefault = Literal["deny", "allow"]
else:
    __getattr__ = literal_aliases(
        __name__, {"DenyAction": ("drop", "reject"), "PodDefault": ("deny", "allow")}
    )

ESTABLISHED = model.Match("conntrack", (("ctstate", "RELATED,ESTABLISHED"),))
INVALID = model.Match("conntrack", (("ctstate", "INVALID"),))
FROM_LOCAL = model.Match("addrtype", (("src-type", "LOCAL"),))
#: IPv6 neighbour solicitation (135) and advertisement (136) cross FORWARD
#: between pods on one bridge, unlike ARP; dropping them would cut allowed
#: IPv6 traffic of an isolated pod on a cold neighbour cache.
NEIGHBOUR_DISCOVERY = tuple(
    model.Rule(
        "RETURN",
        names.comment("ipv6 neighbour discovery"),
        protocol="ipv6-icmp",
        matches=(model.Match("icmp6", (("icmpv6-type", icmp_type),)),),
    )
    for icmp_type in ("135", "136")
)


def addresses(record: EndpointRecord, family: model.Family) -> list[str]:
    """The record's IPs of one family, without prefix length."""
    return [ip.split("/", 1)[0] for ip in record.ips if model.family_of(ip) == family]


def forward_chain(records: Iterable[EndpointRecord], family: model.Family) -> model.Chain:
    """``PODWALL-FORWARD`` for the given endpoints: replies first, then every
    egress dispatch, then every ingress dispatch (same-node flows pass both)."""
    ordered = sorted(records, key=lambda record: record.key)
    rules = [model.Rule("RETURN", names.comment("replies"), matches=(ESTABLISHED,))]
    if family == "ipv6":
        rules += NEIGHBOUR_DISCOVERY
    for record in ordered:
        for ip in addresses(record, family):
            note = names.comment(f"egress {record.podNamespace}/{record.podName} {record.key}")
            rules.append(model.Rule(record.egressChain, note, source=ip))
    for record in ordered:
        for ip in addresses(record, family):
            note = names.comment(f"ingress {record.podNamespace}/{record.podName} {record.key}")
            rules.append(model.Rule(record.ingressChain, note, destination=ip))
    return model.Chain(names.FORWARD_CHAIN, tuple(rules))


def deny_rules(family: model.Family, action: DenyAction, note: str) -> tuple[model.Rule, ...]:
    """The terminal rules that refuse a packet: DROP, or REJECT (TCP reset for
    TCP, ICMP port unreachable otherwise)."""
    if action == "drop":
        return (model.Rule("DROP", note),)
    unreachable = "icmp6-port-unreachable" if family == "ipv6" else "icmp-port-unreachable"
    return (
        model.Rule("REJECT", note, protocol="tcp", target_options=(("reject-with", "tcp-reset"),)),
        model.Rule("REJECT", note, target_options=(("reject-with", unreachable),)),
    )


def chain_head(direction: Literal["ingress", "egress"]) -> tuple[model.Rule, ...]:
    """The rules every per-pod chain starts with."""
    head = [model.Rule("DROP", names.comment("invalid"), matches=(INVALID,))]
    if direction == "ingress":
        head.append(model.Rule("RETURN", names.comment("from own node"), matches=(FROM_LOCAL,)))
    return tuple(head)


def default_chains(
    record: EndpointRecord,
    family: model.Family,
    *,
    pod_default: PodDefault,
    deny_action: DenyAction,
) -> tuple[model.Chain, model.Chain]:
    """The (ingress, egress) chains a pod gets at ADD, before the agent has
    programmed it: ``deny`` isolates it both ways, ``allow`` leaves it open."""
    chains = []
    for direction, name in (("ingress", record.ingressChain), ("egress", record.egressChain)):
        rules = chain_head(direction)  # type: ignore[arg-type]
        if pod_default == "deny":
            note = names.comment(f"{direction} default deny until programmed")
            rules += deny_rules(family, deny_action, note)
        chains.append(model.Chain(name, rules))
    return chains[0], chains[1]
