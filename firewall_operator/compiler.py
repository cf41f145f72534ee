"""Compile a snapshot into the kernel state of one node (chains and ipsets).

``compile_node`` takes the cluster snapshot and the node's CNI endpoint
records and returns, per family, a ``FamilyState``: each endpoint's ingress
and egress policy chain, the tier chains they jump into, and the peer sets
those match; and the endpoints' identities (``model.Endpoint``), from which
each backend renders its own dispatch and anti-spoofing (``xtables``,
``nft.layout``).

Per endpoint and direction (docs/design.md "Kernel layout")::

    PODWALL-I-<h>   chain_head, then -g the first tier chain that exists
    PODWALL-IA-<x>  Admin tier: Allow → RETURN, Deny → drop/reject,
                    Pass → -g the next tier chain; at the end -g the next tier
    PODWALL-IN-<x>  NetworkPolicy tier (only when a policy selects the pod):
                    every allow → RETURN, then drop/reject
    PODWALL-IB-<x>  Baseline tier: Allow/Pass → RETURN, Deny → drop/reject;
                    falling off the end is the default allow

The dispatch *jumps* to ``PODWALL-I-<h>``, which *goes to* the tier chains,
so a RETURN anywhere lands back in the dispatch and the packet continues
(same-node flows: sender's egress, then receiver's ingress).  podwall never
ACCEPTs.  An endpoint is ``ingress_open`` when no tier filters its ingress
(only then does it receive other pods' multicast).  Rule count per pod depends only
on the rules that apply to it; peers live in ipsets (``kernel_sets``).

An endpoint whose pod is not in the snapshot (or whose UID differs) gets the
plugin's default chains (``unknown_pod``: deny by default) and is listed in
``CompiledNode.unmatched``.  Chains for a family exist only for endpoints with
an address of that family.

Incremental use: a long-lived ``Compiler`` (one per node agent) returns for
each ``compile(snapshot, endpoints)`` exactly what ``compile_node`` returns
for the same arguments (level-triggered: any snapshot, in any order), but
reuses the previous call's work: the index is moved to the new snapshot
(``Planner.update``), an endpoint's chains are rebuilt only when its record,
its pod, or the policies and FirewallRules that select it changed (chains
name sets, they never list members), and a set is refilled only when the
changed pods can touch it (``kernel_sets.SetContents``).  After one pod label
or one policy change a compile costs a few percent of a fresh one.  A
``Compiler`` is not thread-safe; use one from one thread at a time.

Pure: no I/O; the applier writes the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from firewall_operator import cluster, collector
from firewall_operator.chains import ChainBuilder, Logging
from firewall_operator.index import Changes
from firewall_operator.kernel_sets import SetContents, SetNames
from firewall_operator.logtags import LogTag
from firewall_operator.plan import DIRECTIONS
from firewall_operator.planner import Planner
from firewall_operator.problems import Problem
from firewall_plugin import dataplane, model, xtables
from firewall_plugin.endpoints import EndpointRecord
from firewall_plugin.nft import layout


@dataclass(frozen=True)
class CompiledNode:
    """Desired kernel state per family, plus what could not be used."""

    families: Mapping[model.Family, model.FamilyState] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    unmatched: tuple[str, ...] = ()
    endpoints: tuple[model.Endpoint, ...] = ()
    #: what each tag of the compiled rules stands for (``logtags``)
    log_tags: Mapping[str, LogTag] = field(default_factory=dict)

    def family(self, family: model.Family) -> model.FamilyState:
        return self.families[family]

    @property
    def rule_count(self) -> int:
        return sum(
            len(chain.rules) for state in self.families.values() for chain in state.chains.values()
        )


def match_endpoint(planner: Planner, record: EndpointRecord) -> int | None:
    """The pod id of the record's pod (namespace/name, and UID when both know it)."""
    pod_id = planner.index.pod_id(record.podNamespace, record.podName)
    if pod_id is None:
        return None
    uid = planner.index.pods[pod_id].uid
    if record.podUID and uid and record.podUID != uid:
        return None
    return pod_id


@dataclass(slots=True)
class _Endpoint:
    """One endpoint's chains in one family, what they were built from, and
    the sets they asked for."""

    inputs: tuple[object, ...]
    chains: list[model.Chain]
    sets: tuple[str, ...]
    ingress_open: bool = False
    tags: dict[str, LogTag] = field(default_factory=dict)


#: the endpoints' chains of one family (sorted by name), set names and tags
_Merged = tuple[dict[str, model.Chain], dict[str, None], dict[str, LogTag]]


class Compiler:
    """Compiles successive snapshots of one node, reusing unchanged work."""

    def __init__(
        self,
        *,
        deny_action: dataplane.DenyAction = "drop",
        unknown_pod: dataplane.PodDefault = "deny",
        logging: Logging | None = None,
    ) -> None:
        self.deny_action = deny_action
        self.unknown_pod = unknown_pod
        self.logging = logging or Logging()
        self._planner: Planner | None = None
        self._names: dict[model.Family, SetNames] = {}
        self._contents: dict[model.Family, SetContents] = {}
        self._endpoints: dict[tuple[str, model.Family], _Endpoint] = {}
        self._identity_cache: tuple[tuple[model.Endpoint, ...], dict[str, LogTag]] | None = None
        self._reset()

    @property
    def planner(self) -> Planner:
        """The planner of the last compiled snapshot (for status and explain)."""
        if self._planner is None:
            raise LookupError("nothing compiled yet")
        return self._planner

    def compile(
        self, snapshot: cluster.Snapshot, endpoints: Iterable[EndpointRecord]
    ) -> CompiledNode:
        """Exactly ``compile_node(snapshot, endpoints, <this compiler's options>)``.
        If it raises, the compiler forgets everything (the next call starts afresh)."""
        try:
            changes: Changes | None = None
            with collector.paused():
                if self._planner is None:
                    self._planner = Planner(snapshot)
                else:
                    changes = self._planner.update(snapshot)
                return self._compile_planner(self._planner, endpoints, changes)
        except BaseException:
            self._reset()
            raise

    def _reset(self) -> None:
        self._planner = None
        self._names = {family: SetNames(family) for family in model.FAMILIES}
        self._contents = {family: SetContents(family) for family in model.FAMILIES}
        self._endpoints = {}
        self._merged: dict[model.Family, tuple[list[_Endpoint], _Merged]] = {}

    def _compile_planner(
        self, planner: Planner, endpoints: Iterable[EndpointRecord], changes: Changes | None
    ) -> CompiledNode:
        """Compile ``planner``'s snapshot; ``changes`` are the pods changed since
        the previous call on this compiler (None: unknown, rebuild every set)."""
        # a record's key is computed from its fields: once per sync, not per use
        keyed = sorted(((record.key, record) for record in endpoints), key=lambda pair: pair[0])
        matched = {key: match_endpoint(planner, record) for key, record in keyed}
        inputs = {key: _inputs(planner, record, matched[key]) for key, record in keyed}
        kept: dict[tuple[str, model.Family], _Endpoint] = {}
        families = {}
        tags: dict[str, LogTag] = {}
        open_ingress: dict[str, bool] = {}
        for family in model.FAMILIES:
            chosen: list[_Endpoint] = []
            for record_key, record in keyed:
                if not dataplane.addresses(record, family):
                    continue
                key = (record_key, family)
                entry = self._endpoints.get(key)
                if entry is None or entry.inputs != inputs[record_key]:
                    entry = self._build(planner, record, matched[record_key], family)
                    entry.inputs = inputs[record_key]
                kept[key] = entry
                open_ingress[record_key] = entry.ingress_open
                chosen.append(entry)
            chains, wanted, family_tags = self._merge(family, chosen)
            tags.update(family_tags)
            namer = self._names[family]
            specs = [namer.specs[name] for name in wanted]
            sets = self._contents[family].build(planner.index, specs, changes)
            namer.keep(wanted)
            families[family] = model.FamilyState(
                family, chains=chains, sets=dict(sorted(sets.items()))
            )
        self._endpoints = kept
        unmatched = tuple(key for key, pod_id in matched.items() if pod_id is None)
        identities = tuple(
            record.endpoint(ingress_open=open_ingress.get(key, False)) for key, record in keyed
        )
        tags.update(self._identity_tags(identities))
        return CompiledNode(families, tuple(planner.problems()), unmatched, identities, tags)

    def _merge(self, family: model.Family, chosen: list[_Endpoint]) -> _Merged:
        """The chains (sorted by name), set names and tags of the endpoints
        ``chosen`` for ``family``: those of the last call when it chose the
        very same endpoint entries (a sync that changed no chain)."""
        last = self._merged.get(family)
        if (
            last is not None
            and len(last[0]) == len(chosen)
            and all(a is b for a, b in zip(last[0], chosen, strict=True))
        ):
            return last[1]
        chains: dict[str, model.Chain] = {}
        wanted: dict[str, None] = {}
        tags: dict[str, LogTag] = {}
        for entry in chosen:
            tags.update(entry.tags)
            chains.update((chain.name, chain) for chain in entry.chains)
            wanted.update(dict.fromkeys(entry.sets))
        merged = (dict(sorted(chains.items())), wanted, tags)
        self._merged[family] = (chosen, merged)
        return merged

    def _identity_tags(self, identities: tuple[model.Endpoint, ...]) -> dict[str, LogTag]:
        """The tags of the drops the data planes add for identity (anti-spoofing,
        multicast isolation): the same for every sync with the same endpoints."""
        if self._identity_cache is None or self._identity_cache[0] != identities:
            fields = xtables.identity_tags(identities)
            layout.skeleton_rules(None, tags=fields)
            found = {tag: LogTag(*value) for tag, value in fields.items()}  # type: ignore[arg-type]
            self._identity_cache = (identities, found)
        return self._identity_cache[1]

    def _build(
        self, planner: Planner, record: EndpointRecord, pod_id: int | None, family: model.Family
    ) -> _Endpoint:
        namer = self._names[family]
        builder = ChainBuilder(
            namer, family=family, deny_action=self.deny_action, logging=self.logging
        )
        if pod_id is None:
            pair = builder.default_chains(record, self.unknown_pod)
            opened = self.unknown_pod == "allow"
            return _Endpoint((), pair, (), ingress_open=opened, tags=builder.tags)
        namer.requested.clear()
        pod = planner.index.pods[pod_id]
        chains = []
        ingress_open = False
        for direction in DIRECTIONS:
            plan = planner.plan(pod_id, direction)
            built = builder.endpoint_chains(record, pod, plan)
            if direction == "ingress":
                ingress_open = len(built) == 1  # the main chain alone: no tier filters
            chains += built
        return _Endpoint(
            (), chains, tuple(namer.requested), ingress_open=ingress_open, tags=builder.tags
        )


def _inputs(planner: Planner, record: EndpointRecord, pod_id: int | None) -> tuple[object, ...]:
    """Everything an endpoint's chains depend on (besides the compiler's options)."""
    if pod_id is None:
        return (record,)
    pod = planner.index.pods[pod_id]
    return (record, pod, planner.policies_for(pod_id), planner.rules_for(pod_id))


def compile_node(
    snapshot: cluster.Snapshot | Planner,
    endpoints: Iterable[EndpointRecord],
    *,
    deny_action: dataplane.DenyAction = "drop",
    unknown_pod: dataplane.PodDefault = "deny",
    logging: Logging | None = None,
) -> CompiledNode:
    """The desired chains and sets of the node that owns ``endpoints``."""
    with collector.paused():
        planner = snapshot if isinstance(snapshot, Planner) else Planner(snapshot)
        fresh = Compiler(deny_action=deny_action, unknown_pod=unknown_pod, logging=logging)
        return fresh._compile_planner(planner, endpoints, None)
