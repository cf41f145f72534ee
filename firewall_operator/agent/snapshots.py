"""Cheap ``cluster.Snapshot``s of the agent's cache: sorted values kept up to date.

``Ordered`` keeps one kind's values sorted by key as changes arrive (bisect:
an update costs a lookup, a removal one list move; additions wait in a dict
until the next read, which places a few by bisect or merges many with one
sort, so priming 100k pods is not 100k list moves), and hands out one tuple
of the values that is reused until the next change.
``SnapshotParts`` assembles a ``cluster.Snapshot`` equal to what
``cluster.Snapshot.build`` makes of the same objects, but from the kinds'
tuples (the three upstream kinds concatenated into ``cluster_policies``, in
``Snapshot.build``'s kind-then-name order): a kind that did not change gives
the *same* tuple object as in the previous snapshot, so the incremental
compiler (``Planner.update``) sees at once that nothing changed there, and
unchanged objects keep their identity.  A snapshot whose pods changed
carries a ``cluster.PodDelta`` (the pods tuple of the previous snapshot and
the keys of the pods put or removed since), so the index compares those pods
only, not all 100k of them.  Nothing is parsed or sorted again per sync.

Pure: no I/O; the cache calls it from one thread.
"""

from __future__ import annotations

import bisect
from typing import Any

from firewall_operator import cluster

Key = tuple[str, str]


class Ordered:
    """Values sorted by key; ``values()`` is one tuple until the next change."""

    MERGE_AT = 64  # more additions than this: one sort instead of bisect inserts

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._values: list[Any] = []
        self._added: dict[Key, Any] = {}  # new keys, not placed yet
        self._tuple: tuple[Any, ...] | None = ()

    def __len__(self) -> int:
        return len(self._keys) + len(self._added)

    def _find(self, key: Key) -> int | None:
        at = bisect.bisect_left(self._keys, key)
        return at if at < len(self._keys) and self._keys[at] == key else None

    def put(self, key: Key, value: Any) -> bool:
        """Set ``key``'s value; True when the key is new."""
        self._tuple = None
        at = self._find(key)
        if at is not None:
            self._values[at] = value
            return False
        new = key not in self._added
        self._added[key] = value
        return new

    def remove(self, key: Key) -> bool:
        """Drop ``key``; True when it was there."""
        if self._added.pop(key, self) is not self:
            self._tuple = None
            return True
        at = self._find(key)
        if at is None:
            return False
        del self._keys[at], self._values[at]
        self._tuple = None
        return True

    def _place(self) -> None:
        added, self._added = self._added, {}
        if len(added) > self.MERGE_AT:
            merged = dict(zip(self._keys, self._values, strict=True))
            merged.update(added)
            self._keys = sorted(merged)
            self._values = [merged[key] for key in self._keys]
            return
        for key, value in added.items():
            at = bisect.bisect_left(self._keys, key)
            self._keys.insert(at, key)
            self._values.insert(at, value)

    def values(self) -> tuple[Any, ...]:
        """The values in key order (the same object until a change)."""
        if self._tuple is None:
            if self._added:
                self._place()
            self._tuple = tuple(self._values)
        return self._tuple


class SnapshotParts:
    """The cache's kinds as ``Ordered`` plus the namespaces pods live in."""

    def __init__(self) -> None:
        self.namespaces = Ordered()
        self.pods = Ordered()
        self.policies = Ordered()
        self.rules = Ordered()  # FirewallRules (their RuleMeta stays in the cache)
        self.nodes = Ordered()
        # upstream cluster policies by plural; keys (namespace "", name) collide across kinds
        self.upstream: dict[str, Ordered] = {
            plural: Ordered()
            for plural in (
                "adminnetworkpolicies",
                "baselineadminnetworkpolicies",
                "clusternetworkpolicies",
            )
        }
        self._upstream: tuple[tuple[Any, ...], tuple[Any, ...]] = ((), ())
        self.pod_namespaces: dict[str, int] = {}  # namespace → pods in it
        self.pods_touched: set[Key] = set()  # pods put or removed since the last snapshot
        self._namespace_map: dict[str, cluster.Namespace] | None = None
        self._namespace_inputs: tuple[object, ...] = ()
        self._last: cluster.Snapshot | None = None

    def pod_added(self, namespace: str) -> None:
        self.pod_namespaces[namespace] = self.pod_namespaces.get(namespace, 0) + 1

    def pod_removed(self, namespace: str) -> None:
        left = self.pod_namespaces.get(namespace, 0) - 1
        if left > 0:
            self.pod_namespaces[namespace] = left
        else:
            self.pod_namespaces.pop(namespace, None)

    def _namespaces(
        self, objects: tuple[cluster.Namespace, ...], policies: tuple[Any, ...]
    ) -> dict[str, cluster.Namespace]:
        """Namespace objects plus the implied ones (as ``Snapshot.build``)."""
        implied = frozenset(self.pod_namespaces) | {policy.namespace for policy in policies}
        inputs = (objects, implied)
        if self._namespace_map is not None and self._namespace_inputs == inputs:
            return self._namespace_map
        by_name = {ns.name: ns for ns in objects}
        for name in implied:
            by_name.setdefault(name, cluster.Namespace(name, {cluster.NAME_LABEL: name}))
        self._namespace_map = dict(sorted(by_name.items()))
        self._namespace_inputs = inputs
        return self._namespace_map

    def _cluster_policies(self) -> tuple[Any, ...]:
        """The upstream kinds' values as one tuple (the same object until one changes)."""
        parts = tuple(self.upstream[plural].values() for plural in sorted(self.upstream))
        if len(parts) != len(self._upstream[0]) or any(
            a is not b for a, b in zip(parts, self._upstream[0], strict=True)
        ):
            self._upstream = (parts, tuple(item for part in parts for item in part))
        return self._upstream[1]

    def snapshot(self) -> cluster.Snapshot:
        """The snapshot of the current values (the previous one if nothing changed)."""
        policies = self.policies.values()
        parts = (
            self._namespaces(self.namespaces.values(), policies),
            self.pods.values(),
            policies,
            self.rules.values(),
            self._cluster_policies(),
            self.nodes.values(),
        )
        last = self._last
        if last is not None and all(
            new is old
            for new, old in zip(
                parts,
                (
                    last.namespaces,
                    last.pods,
                    last.policies,
                    last.firewall_rules,
                    last.cluster_policies,
                    last.nodes,
                ),
                strict=True,
            )
        ):
            return last
        delta = None
        if last is not None and parts[1] is not last.pods:
            delta = cluster.PodDelta(last.pods, frozenset(self.pods_touched))
        self.pods_touched = set()
        self._last = cluster.Snapshot(
            namespaces=parts[0],
            pods=parts[1],
            policies=parts[2],
            firewall_rules=parts[3],
            cluster_policies=parts[4],
            nodes=parts[5],
            pod_delta=delta,
        )
        return self._last
