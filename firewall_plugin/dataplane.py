"""The per-pod policy chains every backend renders, and their shared pieces.

Each attachment has an ingress chain (``PODWALL-I-<h>``) and an egress chain
(``PODWALL-E-<h>``) per family.  The plugin creates them at ADD with the
configured ``podDefault``; the agent fills them with the pod's tiers
(``firewall_operator.chains``).  A policy chain starts by dropping INVALID
packets, ends in drop/reject or return: podwall only subtracts.

How packets reach these chains (identity, dispatch, anti-spoofing) is the
backend's layout: ``firewall_plugin.xtables`` for the iptables backends,
``firewall_plugin.nft.layout`` for nftables.  Both render the same
``model.Endpoint`` list.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_plugin import model, names
from firewall_plugin.values import literal_aliases

TYPE_CHECKING = False  # typing costs the CNI start-up ~4 ms (see values.py)
if TYPE_CHECKING:
    from typing import Literal

    from firewall_plugin.endpoints import EndpointRecord

    DenyAction = Literal["drop", "reject"]
    PodDefault = Literal["deny", "allow"]
    Direction = Literal["ingress", "egress"]
else:
    __getattr__ = literal_aliases(
        __name__,
        {
            "DenyAction": ("drop", "reject"),
            "PodDefault": ("deny", "allow"),
            "Direction": ("ingress", "egress"),
        },
    )

ESTABLISHED = model.Match("conntrack", (("ctstate", "ESTABLISHED"),))
RELATED = model.Match("conntrack", (("ctstate", "RELATED"),))
INVALID = model.Match("conntrack", (("ctstate", "INVALID"),))


def addresses(record: EndpointRecord, family: model.Family) -> list[str]:
    """The record's IPs of one family, without prefix length."""
    return [ip.split("/", 1)[0] for ip in record.ips if model.family_of(ip) == family]


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


def chain_head(direction: Direction) -> tuple[model.Rule, ...]:
    """The rules every per-pod policy chain starts with.  There is no
    exemption by source address: node traffic never reaches an ingress chain
    (it leaves the node's own stack through OUTPUT, not FORWARD)."""
    del direction  # both directions start alike
    return (model.Rule("DROP", names.comment("invalid"), matches=(INVALID,)),)


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


NFLOG_SIZE = "128"  # the agent's traffic log reads this much of each packet


def log_rule(base: model.Rule, tag: str, note: str, spec: model.LogSpec) -> model.Rule:
    """An NFLOG rule with ``base``'s matches, rate-limited by ``spec`` (per
    rule, in the kernel), its prefix ``tag``: what goes before a logged drop."""
    limit: tuple[model.Option, ...] = (("limit", spec.iptables_rate),)
    if spec.burst != 5:  # iptables-save leaves the default out
        limit += (("limit-burst", str(spec.burst)),)
    options = (("nflog-prefix", tag), ("nflog-group", str(spec.group)), ("nflog-size", NFLOG_SIZE))
    return base.replace(
        target="NFLOG",
        comment=note,
        matches=(*base.matches, model.Match("limit", limit)),
        target_options=options,
        goto=False,
    )


def tag_drops(
    rules: tuple[model.Rule, ...] | list[model.Rule],
    *,
    direction: str,
    tier: str,
    pod: str,
    log: model.LogSpec | None,
    tags: dict[str, tuple[str, ...]] | None = None,
) -> tuple[model.Rule, ...]:
    """``rules`` with every DROP tagged (its comment starts with the tag, its
    counter then counts per tag) and, with ``log``, logged first.  ``tags``
    collects what each tag stands for (direction, verdict, tier, policy,
    rule, pod: ``logtags.LogTag``'s fields)."""
    out: list[model.Rule] = []
    for rule in rules:
        if rule.target != "DROP":
            out.append(rule)
            continue
        text = rule.comment.removeprefix(f"{names.COMMENT_PREFIX}: ")
        reason = text.split(": ", 1)[0]  # "spoofed source: from x/a" counts as "spoofed source"
        fields = (direction, "deny", tier, TIER_POLICY.get(tier, tier), reason, pod)
        tag = names.log_tag(*fields)
        if tags is not None:
            tags[tag] = fields
        note = names.comment(f"{tag} {text}")
        if log is not None:
            out.append(log_rule(rule, tag, note, log))
        out.append(rule.replace(comment=note))
    return tuple(out)


#: the "policy" a drop of a fixed tier is counted under
TIER_POLICY = {"spoofing": "anti-spoofing", "isolation": "multicast isolation"}
