"""The agent's slim cluster cache, with its own mark-and-sweep, → ``cluster.Snapshot``.

It holds only what policy needs, never object bodies: pods as
``cluster.Pod`` (namespace, name, UID, node, labels, IPs, named ports,
hostNetwork; label maps are interned, so pods of one template share one;
with ``node`` given, pods of other nodes keep no UID: only this node's
endpoint records are matched by it), namespace labels, Nodes (labels and
addresses, for ``nodes`` peers), parsed NetworkPolicies, FirewallRules and
the upstream cluster policies (``UPSTREAM_KINDS``; plus, for FirewallRules
and those, the few fields the status writers compare).  Every entry
remembers the resourceVersion it came from.  ``BASE_KINDS`` are what every
agent watches; the upstream kinds only with ``--upstream-policy``.

Inputs are watch events (``observe``: ADDED/MODIFIED/DELETED, and ``None``
for objects of a (re-)list) and the agent's own LISTs (``relist_item`` per
object, then ``relist_finish``: *sweep* every entry the list did not have and
that is not newer than the list).  kopf never drops objects that vanished
across a 410 re-list; the sweep does.  DELETED events leave tombstones so a
list taken before a delete cannot bring the object back.  resourceVersions are
compared as integers (etcd revisions); an unparsable one counts as newest.
``observed`` is the highest resourceVersion seen (events and lists).

``snapshot()`` is cheap: every change also updates ``snapshots.SnapshotParts``
(values kept sorted), so a snapshot re-parses and re-sorts nothing, and kinds
that did not change keep their tuple (and a change that is equal for policy,
such as a FirewallRule status or a pod's new resourceVersion alone, keeps the
old object), which the incremental compiler checks by identity.

Pure: no I/O, no kopf; the caller serialises calls (one event loop).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from firewall_operator import cluster, fwrule, netpol, upstream
from firewall_operator.agent import snapshots

Kind = Literal[
    "pods",
    "namespaces",
    "networkpolicies",
    "firewallrules",
    "nodes",
    "clusternetworkpolicies",
    "adminnetworkpolicies",
    "baselineadminnetworkpolicies",
]
BASE_KINDS: tuple[Kind, ...] = ("namespaces", "pods", "networkpolicies", "firewallrules", "nodes")
UPSTREAM_KINDS: tuple[Kind, ...] = (
    "clusternetworkpolicies",
    "adminnetworkpolicies",
    "baselineadminnetworkpolicies",
)
KINDS: tuple[Kind, ...] = BASE_KINDS + UPSTREAM_KINDS
#: kinds whose entries are (parsed policy, RuleMeta), and the condition type they report
WITH_META: dict[Kind, str] = {
    "firewallrules": "Valid",
    **dict.fromkeys(UPSTREAM_KINDS, "Accepted"),
}
#: the upstream kind of each plural
UPSTREAM_KIND_NAMES: dict[Kind, str] = {
    "clusternetworkpolicies": upstream.CNP.kind,
    "adminnetworkpolicies": upstream.ANP.kind,
    "baselineadminnetworkpolicies": upstream.BANP.kind,
}
Key = tuple[str, str]
NEWEST = sys.maxsize
MAX_TOMBSTONES = 50_000
GONE_PHASES = ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class RuleMeta:
    """What the status writers need of a FirewallRule (or an upstream cluster
    policy) besides its parsed form."""

    uid: str
    generation: int
    resource_version: str
    # its Valid (upstream kinds: Accepted) condition: status, reason, message, generation
    valid: tuple[str, str, str, int] | None
    ingress_rules: int
    egress_rules: int
    transition: str = ""  # lastTransitionTime of the Valid condition


def version_of(obj: Mapping[str, Any]) -> int:
    raw = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(str(raw))
    except ValueError:
        return NEWEST


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    # one string per namespace, not one per object (100k pods: 5 MiB)
    return (sys.intern(str(meta.get("namespace") or "")), str(meta.get("name") or ""))


def _valid_condition(
    status: Mapping[str, Any], kind: str = "Valid"
) -> tuple[tuple[str, str, str, int] | None, str]:
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            gen = cond.get("observedGeneration")
            found = (
                str(cond.get("status", "")),
                str(cond.get("reason", "")),
                str(cond.get("message", "")),
                gen if isinstance(gen, int) else 0,
            )
            return found, str(cond.get("lastTransitionTime") or "")
    return None, ""


def rule_meta(obj: Mapping[str, Any], condition: str = "Valid") -> RuleMeta:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    valid, since = _valid_condition(obj.get("status") or {}, condition)
    generation = meta.get("generation")
    return RuleMeta(
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else 0,
        resource_version=str(meta.get("resourceVersion") or ""),
        valid=valid,
        ingress_rules=len(spec.get("ingress") or []),
        egress_rules=len(spec.get("egress") or []),
        transition=since,
    )


def _same_policy(kind: Kind, old: Any, new: Any) -> bool:
    """Equal for policy (a FirewallRule's status alone changes nothing)."""
    if kind in WITH_META:
        return bool(old[0] == new[0])
    return bool(old == new)


def _with_meta(
    parse: Callable[[Mapping[str, Any]], fwrule.FirewallRule], condition: str
) -> Callable[[Mapping[str, Any]], tuple[fwrule.FirewallRule, RuleMeta]]:
    return lambda obj: (parse(obj), rule_meta(obj, condition))


def _upstream_parser(
    kind: Kind,
) -> Callable[[Mapping[str, Any]], tuple[fwrule.FirewallRule, RuleMeta]]:
    name = UPSTREAM_KIND_NAMES[kind]
    return _with_meta(lambda obj: upstream.parse(obj, name), "Accepted")


class ClusterCache:
    """Slim entries per kind: ``{key: (resourceVersion, value)}`` (see module doc)."""

    def __init__(self, *, node: str | None = None) -> None:
        self.node = node  # pods elsewhere keep no UID (only local endpoints match by it)
        self.entries: dict[Kind, dict[Key, tuple[int, Any]]] = {kind: {} for kind in KINDS}
        self.tombstones: dict[Kind, dict[Key, int]] = {kind: {} for kind in KINDS}
        self.version = 0  # bumped on every change that can matter to policy
        self.observed = 0  # the highest resourceVersion seen
        self.parts = snapshots.SnapshotParts()
        self._ordered: dict[Kind, snapshots.Ordered] = {
            "namespaces": self.parts.namespaces,
            "pods": self.parts.pods,
            "networkpolicies": self.parts.policies,
            "firewallrules": self.parts.rules,
            "nodes": self.parts.nodes,
            **{kind: self.parts.upstream[kind] for kind in UPSTREAM_KINDS},
        }
        self._labels: dict[tuple[str, ...], Mapping[str, str]] = {}
        self._ports: dict[tuple[cluster.NamedPort, ...], tuple[cluster.NamedPort, ...]] = {}
        self._parsers: dict[Kind, Callable[[Mapping[str, Any]], Any]] = {
            "pods": self._pod,
            "namespaces": cluster.namespace_from_dict,
            "networkpolicies": netpol.parse,
            "firewallrules": _with_meta(fwrule.parse, "Valid"),
            "nodes": cluster.node_from_dict,
            **{kind: _upstream_parser(kind) for kind in UPSTREAM_KINDS},
        }

    # --- parsing -------------------------------------------------------------

    def _intern_labels(self, labels: Mapping[str, str]) -> Mapping[str, str]:
        items = sorted(labels.items())
        key = tuple(part for item in items for part in item)  # flat: a third of the size
        found = self._labels.get(key)
        if found is None:
            found = self._labels[key] = {sys.intern(k): v for k, v in items}
        return found

    def _pod(self, obj: Mapping[str, Any]) -> cluster.Pod:
        pod = cluster.pod_from_dict(obj)
        return cluster.Pod(
            namespace=sys.intern(pod.namespace),
            name=pod.name,
            uid=pod.uid if self.node is None or pod.node in (self.node, "") else "",
            node=sys.intern(pod.node),
            labels=self._intern_labels(pod.labels),
            ips=pod.ips,
            ports=self._ports.setdefault(pod.ports, pod.ports),
            host_network=pod.host_network,
        )

    @staticmethod
    def _gone(kind: Kind, obj: Mapping[str, Any]) -> bool:
        return kind == "pods" and (obj.get("status") or {}).get("phase") in GONE_PHASES

    # --- events --------------------------------------------------------------

    def observe(self, kind: Kind, event_type: str | None, obj: Mapping[str, Any]) -> bool:
        """Apply one watch event; True when the cache changed for policy."""
        key, version = key_of(obj), version_of(obj)
        if version != NEWEST and version > self.observed:
            self.observed = version
        if event_type == "DELETED" or self._gone(kind, obj):
            return self._delete(kind, key, version)
        return self._upsert(kind, key, version, obj)

    def _delete(self, kind: Kind, key: Key, version: int) -> bool:
        tombs = self.tombstones[kind]
        tombs[key] = max(version, tombs.get(key, 0))
        if len(tombs) > MAX_TOMBSTONES:
            for old in list(tombs)[: MAX_TOMBSTONES // 2]:
                del tombs[old]
        current = self.entries[kind].get(key)
        if current is None or (current[0] > version and version != NEWEST):
            return False
        self._drop(kind, key)
        self.version += 1
        return True

    def _drop(self, kind: Kind, key: Key) -> None:
        del self.entries[kind][key]
        if kind == "pods":
            self.parts.pods_touched.add(key)
        if self._ordered[kind].remove(key) and kind == "pods":
            self.parts.pod_removed(key[0])

    def _put(self, kind: Kind, key: Key, value: Any) -> None:
        policy_value = value[0] if kind in WITH_META else value
        if kind == "pods":
            self.parts.pods_touched.add(key)
        if self._ordered[kind].put(key, policy_value) and kind == "pods":
            self.parts.pod_added(key[0])

    def _upsert(self, kind: Kind, key: Key, version: int, obj: Mapping[str, Any]) -> bool:
        if self.tombstones[kind].get(key, -1) >= version:
            return False  # deleted after this copy was taken
        current = self.entries[kind].get(key)
        if current is not None and current[0] >= version and version != NEWEST:
            # an older copy (a list) than what a watch already told, or the same
            # version again (a re-list): nothing to parse
            return False
        value = self._parsers[kind](obj)
        if current is not None and _same_policy(kind, current[1], value):
            # keep the object the snapshot holds (identity tells "unchanged")
            kept = (current[1][0], value[1]) if kind in WITH_META else current[1]
            self.entries[kind][key] = (version, kept)
            return False
        self.entries[kind][key] = (version, value)
        self._put(kind, key, value)
        self.version += 1
        return True

    # --- own lists: mark and sweep ---------------------------------------------

    def relist_item(self, kind: Kind, obj: Mapping[str, Any], present: set[Key]) -> bool:
        """One object of an own LIST: upsert it and mark it present."""
        present.add(key_of(obj))
        return self.observe(kind, None, obj)

    def relist_finish(self, kind: Kind, present: set[Key], list_version: str) -> list[Key]:
        """Sweep: drop entries the list lacked that are not newer than it."""
        try:
            limit = int(list_version)
        except ValueError:
            limit = NEWEST
        if limit != NEWEST and limit > self.observed:
            self.observed = limit
        entries = self.entries[kind]
        swept = [key for key, (ver, _) in entries.items() if key not in present and ver <= limit]
        for key in swept:
            self._drop(kind, key)
        tombs = self.tombstones[kind]
        for key in [key for key, ver in tombs.items() if ver <= limit]:
            del tombs[key]
        if swept:
            self.version += 1
        if kind == "pods":
            self._collect_labels()
        return swept

    def _collect_labels(self) -> None:
        live = {id(pod.labels) for _, pod in self.entries["pods"].values()}
        self._labels = {k: v for k, v in self._labels.items() if id(v) in live}
        ports = {id(pod.ports) for _, pod in self.entries["pods"].values()}
        self._ports = {k: v for k, v in self._ports.items() if id(v) in ports}

    # --- reading -------------------------------------------------------------

    def pod(self, namespace: str, name: str) -> cluster.Pod | None:
        found = self.entries["pods"].get((namespace, name))
        return None if found is None else found[1]

    def rules(self, kind: Kind = "firewallrules") -> Iterable[tuple[fwrule.FirewallRule, RuleMeta]]:
        """FirewallRules (or the policies of another ``WITH_META`` kind) and their meta."""
        return (value for _, value in self.entries[kind].values())

    def counts(self) -> dict[str, int]:
        return {kind: len(entries) for kind, entries in self.entries.items()}

    def snapshot(self) -> cluster.Snapshot:
        """The policy snapshot of everything cached (the same object while
        nothing changed; see module doc)."""
        return self.parts.snapshot()
