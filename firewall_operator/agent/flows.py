"""Cut the established flows that new rules deny (opt-in: ``--cut-denied-flows``).

Kubernetes leaves it to the implementation whether a policy change ends
connections that are already established.  By default podwall keeps them:
conntrack accepts their packets before any policy chain looks at them.  With
``--cut-denied-flows`` the agent, after every sync that changed a pod's
effective rules (its policy chains, or the members of the peer sets they
match), deletes the conntrack entries of that pod's addresses
(``firewall_plugin.conntrack.forget``).  The next packet of each of its flows
is then judged as a new one: an allowed TCP flow is picked up again in the
middle (the kernel's ``nf_conntrack_tcp_loose``, on by default), a UDP flow
gets a new entry, and what the new rules deny stops.

Caveats (why it is opt-in): every flow of such a pod loses its conntrack
entry, including allowed ones and those of the node itself; a flow through a
Service (kube-proxy's DNAT) is translated again and may land on another
backend, which resets it; with ``nf_conntrack_tcp_loose=0`` allowed TCP
flows stop too.  A pod the agent sees for the first time (a new pod, or every
pod right after the agent starts) is not cut: the plugin already deleted the
entries of a new pod's addresses at ADD.

``FlowCutter.changed`` is pure; ``FlowCutter.cut`` talks to conntrack.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from firewall_plugin import conntrack, model
from firewall_plugin.endpoints import EndpointRecord
from firewall_plugin.errors import PodwallError

log = logging.getLogger(__name__)

#: a set's name and members
Members = tuple[tuple[str, tuple[str, ...]], ...]
#: what decides a pod's verdicts: per family, its chains and their sets' members
Fingerprint = tuple[tuple[str, tuple[model.Chain, ...], Members], ...]


def _reachable(state: model.FamilyState, start: str) -> list[model.Chain]:
    """``start`` and every chain its rules jump or go to, in order."""
    found: dict[str, model.Chain] = {}
    pending = [start]
    while pending:
        name = pending.pop()
        chain = state.chains.get(name)
        if chain is None or name in found:
            continue
        found[name] = chain
        pending += [rule.target for rule in chain.rules if rule.target in state.chains]
    return list(found.values())


def _sets(chains: Iterable[model.Chain]) -> list[str]:
    """The ipsets the chains' rules match."""
    names: dict[str, None] = {}
    for chain in chains:
        for rule in chain.rules:
            for match in rule.matches:
                for option, value in match.options:
                    if option.lstrip("!") == "match-set":
                        names[value.split()[0]] = None
    return list(names)


def fingerprint(
    families: Mapping[model.Family, model.FamilyState], record: EndpointRecord
) -> Fingerprint:
    """The pod's effective rules: equal fingerprints mean equal verdicts."""
    found = []
    for family in sorted(families):
        state = families[family]
        chains = _reachable(state, record.ingressChain) + _reachable(state, record.egressChain)
        members = tuple(
            (name, state.sets[name].entries) for name in _sets(chains) if name in state.sets
        )
        found.append((family, tuple(chains), members))
    return tuple(found)


class FlowCutter:
    """Remembers each endpoint's effective rules between syncs."""

    def __init__(self) -> None:
        self.seen: dict[str, Fingerprint] = {}
        self.cut_total = 0

    def changed(
        self, families: Mapping[model.Family, model.FamilyState], records: Sequence[EndpointRecord]
    ) -> list[EndpointRecord]:
        """The records whose rules differ from the last sync's (records seen
        for the first time are remembered, not returned)."""
        now = {record.key: fingerprint(families, record) for record in records}
        found = [
            record
            for record in records
            if record.key in self.seen and self.seen[record.key] != now[record.key]
        ]
        self.seen = now
        return found

    def cut(
        self, families: Mapping[model.Family, model.FamilyState], records: Sequence[EndpointRecord]
    ) -> int:
        """After a sync that wrote ``families``: delete the conntrack entries
        of the pods whose rules changed; how many went.  Failures are logged:
        the kernel's rules are right either way."""
        changed = self.changed(families, records)
        if not changed:
            return 0
        addresses = [ip for record in changed for ip in record.addresses()]
        try:
            removed = conntrack.forget(addresses)
        except PodwallError as exc:
            log.warning("cutting the flows of %d pods failed: %s", len(changed), exc)
            return 0
        self.cut_total += removed
        log.info(
            "cut %d established flows of %d pods whose rules changed: %s",
            removed,
            len(changed),
            ", ".join(sorted(record.pod for record in changed)[:10]),
        )
        return removed
