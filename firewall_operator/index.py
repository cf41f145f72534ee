"""Indexes over a snapshot so that selection is set algebra, not scans.

Pods get integer ids: positions in ``Snapshot.pods`` for a fresh index; after
``update`` a pod keeps its id while it exists and new pods get new ids, so
``pods`` is a mapping, not a list.  hostNetwork pods are left out of every
selector index: policy never selects them, as subject or as a pod peer (they
are matched by IP only, and their IP is the node's).  Selections are memoised
by the selectors' canonical keys, so 500 policies that share peers resolve each
distinct peer once.  Pod IPs are parsed once, to integers, for CIDR range
lookups (``pods_in_nets``).

``update(snapshot)`` moves the index to a new snapshot in place and returns the
pods that differ (``Changes``); a snapshot whose ``pod_delta`` starts from the
index's current pods names the pods that may differ, so only those are
compared (the agent's syncs: O(changes), not O(pods)).  Memoised selections are patched for those
pods (a selection that did not change stays the same object, so callers can
test ``is``); a namespace change drops the selections that depend on namespace
labels.  The result is the same as a fresh ``ClusterIndex(snapshot)`` up to the
choice of ids.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from firewall_operator import cidrs, cluster, selectors
from firewall_plugin import model

#: pod id → (old pod or None, new pod or None), for the pods an update touched
Changes = dict[int, tuple[cluster.Pod | None, cluster.Pod | None]]
#: above this many (changed pods x memoised selections), drop the memo instead
PATCH_LIMIT = 200_000
K = TypeVar("K")
#: a pod's ``hash:ip,port`` entries for one port name: (protocol, entry) pairs
PortEntries = tuple[tuple[str, str], ...]


class _LiveLabels(selectors.LabelIndex):
    """A ``LabelIndex`` that objects can join and leave."""

    def add(self, ident: int, labels: Mapping[str, str]) -> None:
        self.everything.add(ident)
        for key, value in labels.items():
            self.by_key.setdefault(key, set()).add(ident)
            self.by_pair.setdefault((key, value), set()).add(ident)

    def remove(self, ident: int, labels: Mapping[str, str]) -> None:
        self.everything.discard(ident)
        for key, value in labels.items():
            _discard(self.by_key, key, ident)
            _discard(self.by_pair, (key, value), ident)


@dataclass(frozen=True, slots=True)
class Selection:
    """Selectable pods in ``namespace`` (when ``namespace_selector`` is None) or
    in the namespaces it matches, that match ``pod_selector`` (None: all).
    ``key`` is canonical: equal for selections of the same pods by construction."""

    namespace: str | None = None
    namespace_selector: selectors.Selector | None = None
    pod_selector: selectors.Selector | None = None
    key: tuple[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.pod_selector is not None and self.pod_selector.is_empty:
            object.__setattr__(self, "pod_selector", None)
        scope = (
            f"ns:{self.namespace}"
            if self.namespace_selector is None
            else f"nss:{self.namespace_selector.key}"
        )
        pods = "*" if self.pod_selector is None else self.pod_selector.key
        object.__setattr__(self, "key", (scope, pods))


@dataclass(slots=True)
class _Memo:
    selection: Selection
    members: frozenset[int]


class ClusterIndex:
    """Lookups over one snapshot; ``update`` moves it to the next one."""

    def __init__(self, snapshot: cluster.Snapshot) -> None:
        self.snapshot = snapshot
        self.pods: dict[int, cluster.Pod] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self._next_id = 0
        self._pods = _LiveLabels(())
        self._by_namespace: dict[str, set[int]] = {}
        self.by_port_name: dict[str, set[int]] = {}
        #: per family, the first IP of that family of each pod that has one
        self.ips: dict[model.Family, dict[int, str]] = {f: {} for f in model.FAMILIES}
        #: per family, how many pods hold each IP of ``ips`` (almost always 1)
        self.ip_holders: dict[model.Family, dict[str, int]] = {f: {} for f in model.FAMILIES}
        self._ranges: dict[model.Family, tuple[list[int], list[int]]] = {}
        self._port_entries: dict[tuple[model.Family, str], dict[int, PortEntries]] = {}
        self._cache: dict[tuple[str, str], _Memo] = {}
        self._labelled: dict[str, frozenset[int]] = {}
        self._set_namespaces(snapshot.namespaces)
        for pod in snapshot.pods:
            self._insert(self._new_id(pod), pod)

    # -- building -------------------------------------------------------------

    def _set_namespaces(self, namespaces: Mapping[str, cluster.Namespace]) -> None:
        self.namespace_names = list(namespaces)
        self._namespaces = selectors.LabelIndex(
            (n, namespaces[name].labels) for n, name in enumerate(self.namespace_names)
        )
        self._ns_matching: dict[str, frozenset[str]] = {}

    def _new_id(self, pod: cluster.Pod) -> int:
        number = self._next_id
        self._next_id += 1
        self.ids[(pod.namespace, pod.name)] = number
        return number

    def _insert(self, number: int, pod: cluster.Pod) -> None:
        self.pods[number] = pod
        for family in model.FAMILIES:
            ip = pod.ip(family)
            if ip is not None:
                self.ips[family][number] = ip
                holders = self.ip_holders[family]
                holders[ip] = holders.get(ip, 0) + 1
        if pod.host_network:
            return
        self._pods.add(number, pod.labels)
        self._by_namespace.setdefault(pod.namespace, set()).add(number)
        for name in {port.name for port in pod.ports}:
            self.by_port_name.setdefault(name, set()).add(number)

    def _remove(self, number: int, pod: cluster.Pod) -> None:
        del self.pods[number]
        for family in model.FAMILIES:
            ip = self.ips[family].pop(number, None)
            if ip is not None:
                holders = self.ip_holders[family]
                if holders[ip] > 1:
                    holders[ip] -= 1
                else:
                    del holders[ip]
        if pod.host_network:
            return
        self._pods.remove(number, pod.labels)
        _discard(self._by_namespace, pod.namespace, number)
        for name in {port.name for port in pod.ports}:
            _discard(self.by_port_name, name, number)

    # -- lookups --------------------------------------------------------------

    def pod_id(self, namespace: str, name: str) -> int | None:
        return self.ids.get((namespace, name))

    def _matching_namespaces(self, selector: selectors.Selector) -> frozenset[str]:
        found = self._ns_matching.get(selector.key)
        if found is None:
            found = frozenset(self.namespace_names[n] for n in self._namespaces.select(selector))
            self._ns_matching[selector.key] = found
        return found

    def namespaces_matching(self, selector: selectors.Selector) -> list[str]:
        return sorted(self._matching_namespaces(selector))

    def in_namespace(self, namespace: str) -> frozenset[int]:
        return frozenset(self._by_namespace.get(namespace, ()))

    def port_entries(self, family: model.Family, name: str, number: int) -> PortEntries:
        """Pod ``number``'s ports named ``name`` as ``hash:ip,port`` entries
        (``10.0.0.5,tcp:8080``) with their protocol; () without an IP of ``family``."""
        table = self._port_entries.setdefault((family, name), {})
        found = table.get(number)
        if found is None:
            ip = self.ips[family].get(number)
            ports = () if ip is None else self.pods[number].named(name)
            found = table[number] = tuple(
                (port.protocol, f"{ip},{port.protocol.lower()}:{port.port}") for port in ports
            )
        return found

    def with_port(self, name: str) -> frozenset[int]:
        """Selectable pods that declare a container port named ``name``."""
        return frozenset(self.by_port_name.get(name, ()))

    def _compute(self, selection: Selection) -> frozenset[int]:
        if selection.namespace_selector is not None:
            spaces = self._matching_namespaces(selection.namespace_selector)
            found = frozenset().union(*(self._by_namespace.get(ns, ()) for ns in spaces))
        else:
            found = self.in_namespace(selection.namespace or "")
        if selection.pod_selector is not None:
            key = selection.pod_selector.key
            if key not in self._labelled:
                self._labelled[key] = self._pods.select(selection.pod_selector)
            found = found & self._labelled[key]
        return found

    def members(self, selection: Selection) -> frozenset[int]:
        """The pods ``selection`` selects (memoised; see ``Selection``)."""
        memo = self._cache.get(selection.key)
        if memo is None:
            memo = self._cache[selection.key] = _Memo(selection, self._compute(selection))
        return memo.members

    def pods_matching(
        self,
        *,
        namespace: str | None = None,
        namespace_selector: selectors.Selector | None = None,
        pod_selector: selectors.Selector | None = None,
    ) -> frozenset[int]:
        """``members(Selection(namespace, namespace_selector, pod_selector))``."""
        return self.members(Selection(namespace, namespace_selector, pod_selector))

    def pods_in_nets(
        self,
        family: model.Family,
        nets: Iterable[cidrs.Network],
        excepts: Iterable[cidrs.Network] = (),
    ) -> set[int]:
        """Selectable pods whose first IP of ``family`` is in one of ``nets``
        and in none of ``excepts`` (networks of other families are ignored)."""
        ints, ids = self._range_table(family)

        def inside(networks: Iterable[cidrs.Network]) -> set[int]:
            found: set[int] = set()
            for net in networks:
                if cidrs.family(net) == family:
                    low, high = cidrs.bounds(net)
                    start, end = bisect.bisect_left(ints, low), bisect.bisect_right(ints, high)
                    found.update(ids[start:end])
            return found

        return inside(nets) - inside(excepts)

    def _range_table(self, family: model.Family) -> tuple[list[int], list[int]]:
        table = self._ranges.get(family)
        if table is None:
            pairs = sorted(
                (value, number)
                for number, ip in self.ips[family].items()
                if not self.pods[number].host_network
                and (value := cidrs.address_int(ip)) is not None
            )
            table = self._ranges[family] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return table

    # -- moving to the next snapshot -----------------------------------------

    def update(self, snapshot: cluster.Snapshot) -> Changes:
        """Move to ``snapshot`` in place; the pods whose object changed."""
        previous, self.snapshot = self.snapshot, snapshot
        namespaces_changed = previous.namespaces != snapshot.namespaces
        if namespaces_changed:
            self._set_namespaces(snapshot.namespaces)
        delta = snapshot.pod_delta
        if delta is not None and delta.base is previous.pods:
            changes = self._delta_changes(delta.keys, snapshot.pods)
        else:
            changes = self._pod_changes(previous.pods, snapshot.pods)
        for number, (old, new) in changes.items():
            if old is not None:
                self._remove(number, old)
            if new is not None:
                self.pods[number] = new  # keep the id
                self._insert(number, new)
            else:
                del self.ids[(old.namespace, old.name)]  # type: ignore[union-attr]
        if changes:
            self._ranges.clear()
            self._labelled.clear()
            for table in self._port_entries.values():
                for number in changes:
                    table.pop(number, None)
        if len(changes) * len(self._cache) > PATCH_LIMIT:
            self._cache.clear()
        elif namespaces_changed:
            self._cache = {
                k: m for k, m in self._cache.items() if m.selection.namespace_selector is None
            }
        self._patch(changes)
        return changes

    def _delta_changes(
        self, keys: Iterable[tuple[str, str]], new: tuple[cluster.Pod, ...]
    ) -> Changes:
        """``_pod_changes`` for the pods at ``keys`` only (found in ``new`` by bisect)."""
        changes: Changes = {}
        for key in sorted(keys):
            at = bisect.bisect_left(new, key, key=lambda pod: (pod.namespace, pod.name))
            pod = new[at] if at < len(new) and (new[at].namespace, new[at].name) == key else None
            number = self.ids.get(key)
            if number is None:
                if pod is not None:
                    changes[self._new_id(pod)] = (None, pod)
            elif pod is None or self.pods[number] != pod:
                changes[number] = (self.pods[number], pod)
        return changes

    def _pod_changes(self, old: tuple[cluster.Pod, ...], new: tuple[cluster.Pod, ...]) -> Changes:
        changes: Changes = {}
        if old is new:
            return changes
        if len(old) == len(new) and all(
            a is b or (a.namespace == b.namespace and a.name == b.name)
            for a, b in zip(old, new, strict=True)
        ):
            for a, b in zip(old, new, strict=True):
                if a is not b and a != b:
                    changes[self.ids[(a.namespace, a.name)]] = (a, b)
            return changes
        seen: set[tuple[str, str]] = set()
        for pod in new:
            key = (pod.namespace, pod.name)
            seen.add(key)
            number = self.ids.get(key)
            if number is None:
                changes[self._new_id(pod)] = (None, pod)
            elif self.pods[number] != pod:
                changes[number] = (self.pods[number], pod)
        for key, number in self.ids.items():
            if key not in seen:
                changes[number] = (self.pods[number], None)
        return changes

    def _selects(self, selection: Selection, pod: cluster.Pod | None) -> bool:
        if pod is None or pod.host_network:
            return False
        if selection.namespace_selector is not None:
            if pod.namespace not in self._matching_namespaces(selection.namespace_selector):
                return False
        elif pod.namespace != selection.namespace:
            return False
        return selection.pod_selector is None or selection.pod_selector.matches(pod.labels)

    def _patch(self, changes: Changes) -> None:
        for memo in self._cache.values():
            joined, left = set(), set()
            for number, (old, new) in changes.items():
                was, now = self._selects(memo.selection, old), self._selects(memo.selection, new)
                if was and not now:
                    left.add(number)
                elif now and not was:
                    joined.add(number)
            if joined or left:
                memo.members = (memo.members - left) | joined


def _discard(table: dict[K, set[int]], key: K, number: int) -> None:
    members = table.get(key)
    if members is not None:
        members.discard(number)
        if not members:
            del table[key]
