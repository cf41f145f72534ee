"""Indexes over a snapshot so that selection is set algebra, not scans.

Pods are numbered by their position in ``Snapshot.pods``.  hostNetwork pods
are left out of every selector index: policy never selects them, as subject or
as a pod peer (they are matched by IP only, and their IP is the node's).
Selections are memoised by the selectors' canonical keys, so 500 policies that
share peers resolve each distinct peer once.

Pure: no I/O.
"""

from __future__ import annotations

from firewall_operator import cluster, selectors
from firewall_plugin import model


class ClusterIndex:
    """Read-only lookups over one snapshot."""

    def __init__(self, snapshot: cluster.Snapshot) -> None:
        self.snapshot = snapshot
        self.pods = snapshot.pods
        self.ids = {(pod.namespace, pod.name): number for number, pod in enumerate(self.pods)}
        self.namespace_names = list(snapshot.namespaces)
        self._namespaces = selectors.LabelIndex(
            (n, snapshot.namespaces[name].labels) for n, name in enumerate(self.namespace_names)
        )
        selectable = [(n, pod) for n, pod in enumerate(self.pods) if not pod.host_network]
        self._pods = selectors.LabelIndex((n, pod.labels) for n, pod in selectable)
        by_namespace: dict[str, set[int]] = {}
        by_port: dict[str, list[int]] = {}
        for number, pod in selectable:
            by_namespace.setdefault(pod.namespace, set()).add(number)
            for name in {port.name for port in pod.ports}:
                by_port.setdefault(name, []).append(number)
        self._by_namespace = {ns: frozenset(ids) for ns, ids in by_namespace.items()}
        self.by_port_name: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in by_port.items()}
        self._cache: dict[tuple[str, str], frozenset[int]] = {}
        #: per family, each pod's first IP of that family (None: none)
        self.ips: dict[model.Family, list[str | None]] = {
            family: [pod.ip(family) for pod in self.pods] for family in model.FAMILIES
        }

    def pod_id(self, namespace: str, name: str) -> int | None:
        return self.ids.get((namespace, name))

    def namespaces_matching(self, selector: selectors.Selector) -> list[str]:
        return sorted(self.namespace_names[n] for n in self._namespaces.select(selector))

    def in_namespace(self, namespace: str) -> frozenset[int]:
        return self._by_namespace.get(namespace, frozenset())

    def _scope(self, scope: str, selector: selectors.Selector | None) -> frozenset[int]:
        """Pods of one namespace (``ns:NAME``) or of matching namespaces."""
        key = (scope, "")
        if key not in self._cache:
            if selector is None:
                found = self.in_namespace(scope[3:])
            else:
                found = frozenset().union(
                    *(self.in_namespace(ns) for ns in self.namespaces_matching(selector))
                )
            self._cache[key] = found
        return self._cache[key]

    def _labelled(self, selector: selectors.Selector) -> frozenset[int]:
        key = ("pods", selector.key)
        if key not in self._cache:
            self._cache[key] = self._pods.select(selector)
        return self._cache[key]

    def pods_matching(
        self,
        *,
        namespace: str | None = None,
        namespace_selector: selectors.Selector | None = None,
        pod_selector: selectors.Selector | None = None,
    ) -> frozenset[int]:
        """Selectable pods in ``namespace`` (when no namespace selector is
        given) or in namespaces matching ``namespace_selector``, that match
        ``pod_selector`` (None: all)."""
        scope = f"ns:{namespace}" if namespace_selector is None else f"nss:{namespace_selector.key}"
        key = (scope, "*" if pod_selector is None else pod_selector.key)
        if key not in self._cache:
            found = self._scope(scope, namespace_selector)
            if pod_selector is not None and not pod_selector.is_empty:
                found = found & self._labelled(pod_selector)
            self._cache[key] = found
        return self._cache[key]
