"""Render one endpoint's ``plan.DirectionPlan`` into chains (see ``compiler``).

A plan rule becomes one iptables rule per (peer, port) pair it names, each
matching the peer's ipset and the port; ingress named ports resolve to numbers
on the pod itself, egress named ports become a ``hash:ip,port`` set match on
the peer.  ``log`` adds a LOG rule (prefix ``podwall <rule>/<entry>``, cut to
the kernel's 29 characters) before the action.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_operator import cluster
from firewall_operator.kernel_sets import SetNames
from firewall_operator.netpol import Direction
from firewall_operator.plan import DirectionPlan, PeerMatch, PlanRule, PortMatch, Tier
from firewall_plugin import dataplane, model, names
from firewall_plugin.endpoints import EndpointRecord

MAX_LOG_PREFIX = 29


def tier_chain_name(record: EndpointRecord, direction: Direction, tier: Tier) -> str:
    """``PODWALL-IA-…``/``-IN-``/``-IB-`` (``E`` for egress), from the attachment."""
    return names.tier_chain(record.key, direction, tier)


def log_prefix(name: str) -> str:
    return (f"podwall {name}"[: MAX_LOG_PREFIX - 1] + " ").replace('"', "")


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
        log_target: str = "LOG",
    ) -> None:
        self.sets = sets
        self.family = family
        self.deny_action = deny_action
        self.log_target = log_target

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
        self, rule: PlanRule, base: model.Rule, next_chain: str | None
    ) -> list[model.Rule]:
        note = names.comment(rule.origin)
        out = []
        if rule.log:
            options = (("log-prefix", log_prefix(rule.log_name)),)
            if self.log_target == "NFLOG":
                options = (("nflog-prefix", log_prefix(rule.log_name)),)
            out.append(base.replace(target=self.log_target, comment=note, target_options=options))
        if rule.action == "Deny":
            return out + self._deny(base, note)
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
                out += self._actions(rule, base, next_chain)
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
        """The endpoint's main chain for ``plan.direction`` and its tier chains."""
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
        note = names.comment(f"{direction} isolated by {', '.join(plan.netpol_selectors)}")
        return rules + list(dataplane.deny_rules(self.family, self.deny_action, note))
