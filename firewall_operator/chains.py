"""Render one endpoint's ``plan.DirectionPlan`` into chains (see ``compiler``).

A plan rule becomes one iptables rule per (peer, port) pair it names, each
matching the peer's ipset and the port; ingress named ports resolve to numbers
on the pod itself, egress named ports become a ``hash:ip,port`` set match on
the peer.

Every rule that drops (a tier's Deny, the NetworkPolicy tier's isolation, an
unknown pod's default) carries a tag (``logtags``) at the head of its comment:
its counter is read back per tag for the drop metrics.  When the drop is to be
logged (``Logging.denied`` node-wide, the NetworkPolicy ``podwall.io/log``
annotation, a FirewallRule rule's ``log``, which on an Allow logs what it
allows) an NFLOG rule with the same matches and a per-rule rate limit comes
first, its prefix the tag; the agent's traffic log resolves tags with
``tags`` (``logtags.LogTag``).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from firewall_operator import cluster, logtags
from firewall_operator.kernel_sets import SetNames
from firewall_operator.netpol import Direction
from firewall_operator.plan import DirectionPlan, PeerMatch, PlanRule, PortMatch, Tier
from firewall_plugin import dataplane, model, names
from firewall_plugin.endpoints import EndpointRecord

DEFAULT_NFLOG_GROUP = 0x5057


@dataclass(frozen=True, slots=True)
class Logging:
    """How log rules are rendered: NFLOG ``group``, a kernel rate limit per
    rule (``rate`` "N/second|minute|hour|day", ``burst``), and ``denied``:
    log every drop, not only where a policy asks."""

    group: int = DEFAULT_NFLOG_GROUP
    rate: str = "10/minute"
    burst: int = 5
    denied: bool = False

    def spec(self) -> model.LogSpec:
        """The settings as the data planes render them."""
        number, _, unit = self.rate.partition("/")
        seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}[unit]
        return model.LogSpec(self.group, int(number), seconds, self.burst)

    def rule(self, base: model.Rule, tag: str, note: str) -> model.Rule:
        """An NFLOG rule with ``base``'s matches, rate-limited, prefixed ``tag``."""
        return dataplane.log_rule(base, tag, note, self.spec())


def tagged_note(tag: str, text: str) -> str:
    """The comment of a tagged rule: the tag first (read back with counters)."""
    return names.comment(f"{tag} {text}")


def tag_of_comment(comment: str) -> str:
    """The tag at the head of a rule comment ('' when there is none)."""
    words = comment.removeprefix(f"{names.COMMENT_PREFIX}: ").split(" ", 1)
    return words[0] if words and logtags.is_podwall(words[0]) else ""


def tier_chain_name(record: EndpointRecord, direction: Direction, tier: Tier) -> str:
    """``PODWALL-IA-…``/``-IN-``/``-IB-`` (``E`` for egress), from the attachment."""
    return names.tier_chain(record.key, direction, tier)


def _ports(port: PortMatch) -> tuple[str | None, tuple[model.Match, ...]]:
    assert port.protocol is not None
    protocol = port.protocol.lower()
    if (port.start, port.end) == (1, 65535):
        return protocol, ()
    value = str(port.start) if port.start == port.end else f"{port.start}:{port.end}"
    return protocol, (model.Match(protocol, (("dport", value),)),)


class ChainBuilder:
    """Chains for the endpoints of one family; sets go to ``sets``."""

    def __init__(
        self,
        sets: SetNames,
        *,
        family: model.Family,
        deny_action: dataplane.DenyAction,
        logging: Logging | None = None,
    ) -> None:
        self.sets = sets
        self.family = family
        self.deny_action = deny_action
        self.logging = logging or Logging()
        #: the tags of the rules built since the caller last cleared it
        self.tags: dict[str, logtags.LogTag] = {}
        self.pod = ""

    def tag(
        self, direction: Direction, verdict: logtags.Verdict, tier: str, policy: str, rule: str
    ) -> str:
        found = logtags.LogTag(direction, verdict, tier, policy, rule, self.pod)
        tag = logtags.tag_for(found)
        self.tags[tag] = found
        return tag

    def _set_match(self, name: str, flags: str) -> model.Match:
        return model.Match("set", (("match-set", f"{name} {flags}"),))

    def _pair(
        self, peer: PeerMatch, port: PortMatch, direction: Direction, pod: cluster.Pod
    ) -> list[model.Rule]:
        """Match-only rules (target left empty) for one peer and one port."""
        flag = "src" if direction == "ingress" else "dst"
        if port.name is not None and direction == "egress":
            named = self.sets.named_port(peer, port)
            return [model.Rule("", "", matches=(self._set_match(named, "dst,dst"),))]
        ref = self.sets.peer(peer)
        if ref is None:
            return []
        base = (self._set_match(ref, flag),) if ref else ()
        if port.is_any:
            return [model.Rule("", "", matches=base)]
        if port.name is None:
            protocol, extra = _ports(port)
            return [model.Rule("", "", protocol=protocol, matches=base + extra)]
        resolved = [p for p in pod.named(port.name) if port.protocol in (None, p.protocol)]
        return [
            model.Rule(
                "",
                "",
                protocol=p.protocol.lower(),
                matches=base + _ports(PortMatch(p.protocol, p.port, p.port))[1],
            )
            for p in resolved
        ]

    def _matchers(self, rule: PlanRule, direction: Direction, pod: cluster.Pod) -> list[model.Rule]:
        found: list[model.Rule] = []
        for peer in rule.peers:
            for port in rule.ports:
                found += self._pair(peer, port, direction, pod)
        return list(dict.fromkeys(found))

    def _deny(self, base: model.Rule, note: str) -> list[model.Rule]:
        denies = dataplane.deny_rules(self.family, self.deny_action, note)
        if base.protocol:
            denies = tuple(d for d in denies if d.protocol in (None, base.protocol))[:1]
        return [
            base.replace(
                target=d.target,
                target_options=d.target_options,
                comment=note,
                protocol=base.protocol or d.protocol,
            )
            for d in denies
        ]

    def _actions(
        self, rule: PlanRule, base: model.Rule, next_chain: str | None, direction: Direction
    ) -> list[model.Rule]:
        tier = "admin" if rule.tier == "admin" else rule.tier
        if rule.action == "Deny":
            tag = self.tag(direction, "deny", tier, rule.policy, rule.rule)
            note = tagged_note(tag, rule.origin)
            logged = rule.log or self.logging.denied
            out = [self.logging.rule(base, tag, note)] if logged else []
            return out + self._deny(base, note)
        note = names.comment(rule.origin)
        out = []
        if rule.log:  # an Allow (or Pass) that asks to be logged
            tag = self.tag(direction, "allow", tier, rule.policy, rule.rule)
            out.append(self.logging.rule(base, tag, tagged_note(tag, rule.origin)))
        if rule.action == "Pass" and next_chain is not None:
            return [*out, base.replace(target=next_chain, comment=note, goto=True)]
        return [*out, base.replace(target="RETURN", comment=note)]

    def _tier(
        self,
        rules: tuple[PlanRule, ...],
        direction: Direction,
        pod: cluster.Pod,
        next_chain: str | None,
    ) -> list[model.Rule]:
        out: list[model.Rule] = []
        for rule in rules:
            for base in self._matchers(rule, direction, pod):
                out += self._actions(rule, base, next_chain, direction)
        return out

    @staticmethod
    def _present(plan: DirectionPlan) -> list[Tier]:
        """The tiers that get a chain: non-empty ones, and netpol when selected."""
        present: list[Tier] = []
        if plan.admin:
            present.append("admin")
        if plan.netpol is not None:
            present.append("netpol")
        if plan.baseline:
            present.append("baseline")
        return present

    def endpoint_chains(
        self, record: EndpointRecord, pod: cluster.Pod, plan: DirectionPlan
    ) -> list[model.Chain]:
        """The endpoint's main chain for ``plan.direction`` and its tier chains
        (their tags go to ``tags``)."""
        self.pod = f"{pod.namespace}/{pod.name}"
        direction = plan.direction
        present = self._present(plan)
        chain_names = {tier: tier_chain_name(record, direction, tier) for tier in present}
        following: dict[Tier, Tier | None] = {
            tier: present[i + 1] if i + 1 < len(present) else None for i, tier in enumerate(present)
        }
        main = record.ingressChain if direction == "ingress" else record.egressChain
        head = list(dataplane.chain_head(direction))
        if present:
            head.append(
                model.Rule(chain_names[present[0]], names.comment(f"{direction} tiers"), goto=True)
            )
        chains = [model.Chain(main, tuple(head))]
        for tier in present:
            nxt = following[tier]
            next_chain = chain_names[nxt] if nxt else None
            rules = self._tier_rules(tier, plan, pod, next_chain)
            chains.append(model.Chain(chain_names[tier], tuple(rules)))
        return chains

    def _tier_rules(
        self, tier: Tier, plan: DirectionPlan, pod: cluster.Pod, next_chain: str | None
    ) -> list[model.Rule]:
        direction = plan.direction
        if tier == "admin":
            rules = self._tier(plan.admin, direction, pod, next_chain)
            if next_chain is not None:
                rules.append(
                    model.Rule(next_chain, names.comment("admin tier: no match"), goto=True)
                )
            return rules
        if tier == "baseline":
            return self._tier(plan.baseline, direction, pod, None)
        rules = self._tier(plan.netpol or (), direction, pod, None)
        selectors = ", ".join(plan.netpol_selectors)
        tag = self.tag(direction, "deny", "netpol", selectors, "")
        note = tagged_note(tag, f"{direction} isolated by {selectors}")
        if plan.netpol_log or self.logging.denied:
            rules.append(self.logging.rule(model.Rule("", ""), tag, note))
        return rules + list(dataplane.deny_rules(self.family, self.deny_action, note))

    def default_chains(
        self, record: EndpointRecord, pod_default: dataplane.PodDefault
    ) -> list[model.Chain]:
        """An unknown pod's chains (``pod_default``), their drops tagged and,
        with ``Logging.denied``, logged."""
        self.pod = f"{record.podNamespace}/{record.podName}"
        chains = []
        pair = dataplane.default_chains(
            record, self.family, pod_default=pod_default, deny_action=self.deny_action
        )
        for direction, chain in zip(("ingress", "egress"), pair, strict=True):
            tag = self.tag(direction, "deny", "default", "podDefault", "")  # type: ignore[arg-type]
            rules: list[model.Rule] = []
            for rule in chain.rules:
                if rule.target in ("DROP", "REJECT") and not rule.matches:
                    note = tagged_note(tag, f"{direction} default deny until programmed")
                    if self.logging.denied and not any(r.target == "NFLOG" for r in rules):
                        rules.append(self.logging.rule(model.Rule("", ""), tag, note))
                    rule = rule.replace(comment=note)
                rules.append(rule)
            chains.append(model.Chain(chain.name, tuple(rules)))
        return chains
