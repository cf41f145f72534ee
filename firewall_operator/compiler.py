"""Compile a snapshot into the kernel state of one node (chains and ipsets).

``compile_node`` takes the cluster snapshot and the node's CNI endpoint
records and returns, per family, a ``FamilyState``: ``PODWALL-FORWARD`` (from
``dataplane.forward_chain``), each endpoint's ingress and egress chain, the
tier chains they jump into, and the ipsets those match.

Per endpoint and direction (DESIGN.md "Kernel layout")::

    PODWALL-I-<h>   chain_head, then -g the first tier chain that exists
    PODWALL-IA-<x>  Admin tier: Allow → RETURN, Deny → drop/reject,
                    Pass → -g the next tier chain; at the end -g the next tier
    PODWALL-IN-<x>  NetworkPolicy tier (only when a policy selects the pod):
                    every allow → RETURN, then drop/reject
    PODWALL-IB-<x>  Baseline tier: Allow/Pass → RETURN, Deny → drop/reject;
                    falling off the end is the default allow

``PODWALL-FORWARD`` *jumps* to ``PODWALL-I-<h>``, which *goes to* the tier
chains, so a RETURN anywhere lands back in ``PODWALL-FORWARD`` and the
packet continues to the next dispatch (same-node flows: sender's egress, then
receiver's ingress).  podwall never ACCEPTs.  Rule count per pod depends only
on the rules that apply to it; peers live in ipsets (``kernel_sets``).

An endpoint whose pod is not in the snapshot (or whose UID differs) gets the
plugin's default chains (``unknown_pod``: deny by default) and is listed in
``CompiledNode.unmatched``.  Chains for a family exist only for endpoints with
an address of that family.  Pure: no I/O; the applier writes the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from firewall_operator import cluster
from firewall_operator.chains import ChainBuilder
from firewall_operator.kernel_sets import SetBuilder
from firewall_operator.plan import DIRECTIONS
from firewall_operator.planner import Planner
from firewall_operator.problems import Problem
from firewall_plugin import dataplane, model, names
from firewall_plugin.endpoints import EndpointRecord


@dataclass(frozen=True)
class CompiledNode:
    """Desired kernel state per family, plus what could not be used."""

    families: Mapping[model.Family, model.FamilyState] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    unmatched: tuple[str, ...] = ()

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


def compile_node(
    snapshot: cluster.Snapshot | Planner,
    endpoints: Iterable[EndpointRecord],
    *,
    deny_action: dataplane.DenyAction = "drop",
    unknown_pod: dataplane.PodDefault = "deny",
    log_target: str = "LOG",
) -> CompiledNode:
    """The desired chains and sets of the node that owns ``endpoints``."""
    planner = snapshot if isinstance(snapshot, Planner) else Planner(snapshot)
    records = sorted(endpoints, key=lambda record: record.key)
    matched = {record.key: match_endpoint(planner, record) for record in records}
    families = {}
    for family in model.FAMILIES:
        sets = SetBuilder(planner.index, family)
        builder = ChainBuilder(sets, family=family, deny_action=deny_action, log_target=log_target)
        chains = {names.FORWARD_CHAIN: dataplane.forward_chain(records, family)}
        for record in records:
            if not dataplane.addresses(record, family):
                continue
            pod_id = matched[record.key]
            if pod_id is None:
                pair = dataplane.default_chains(
                    record, family, pod_default=unknown_pod, deny_action=deny_action
                )
                chains.update({chain.name: chain for chain in pair})
                continue
            pod = planner.index.pods[pod_id]
            for direction in DIRECTIONS:
                plan = planner.plan(pod_id, direction)
                for chain in builder.endpoint_chains(record, pod, plan):
                    chains[chain.name] = chain
        families[family] = model.FamilyState(
            family,
            chains=dict(sorted(chains.items())),
            sets=dict(sorted(sets.sets.items())),
        )
    unmatched = tuple(key for key, pod_id in matched.items() if pod_id is None)
    return CompiledNode(families, tuple(planner.problems()), unmatched)
