"""The cluster model behind ``bench_scale``: pods on nodes, policies, address groups.

``Cluster.generate(nodes, pods_per_node=30)``: ``nodes * pods_per_node`` pods in
namespaces of 150 pods, each namespace a team's with 5 apps (``web``, ``api``,
``db``, ``worker``, ``cache``); pods are placed on nodes at random (seeded), as a
spreading scheduler would.  Policies per namespace, as clusters commonly have
them: default deny; ``db`` admits the namespace's ``api`` (a namespace-local
peer); ``api`` admits ``web`` of the namespace; every pod admits the
``monitoring`` namespace (one cluster-wide peer); and, with ``cross=True``,
``api`` pods of every namespace admit ``web`` pods of every namespace of the
same team (cross-namespace peers: 10 teams).

An *address group* is one distinct peer (its member pods); its *span* is the
set of nodes hosting the pods of the policies that use it: the agents that
need it.  ``group_stats`` samples pod changes and reports, per change, the
groups touched and the agents that must hear of it (sum of spans), and the
mean group size.  Pure: no I/O.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

APPS = ("web", "api", "db", "worker", "cache")
TEAMS = 10
PER_NAMESPACE = 150


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: int  # -1: the monitoring namespace
    app: str
    node: int

    @property
    def team(self) -> int:
        return self.namespace % TEAMS


@dataclass
class Cluster:
    nodes: int
    pods: list[Pod] = field(default_factory=list)
    cross: bool = True
    _nodes: dict[tuple[object, ...], set[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def generate(
        cls, nodes: int, *, pods_per_node: int = 30, cross: bool = True, seed: int = 1
    ) -> Cluster:
        rand = random.Random(seed)
        total = nodes * pods_per_node
        pods = [Pod(-1, "monitor", rand.randrange(nodes)) for _ in range(min(30, nodes))]
        for n in range(total - len(pods)):
            pods.append(Pod(n // PER_NAMESPACE, APPS[n % len(APPS)], rand.randrange(nodes)))
        return cls(nodes, pods, cross)

    def groups_of(self, pod: Pod) -> list[tuple[object, ...]]:
        """The address groups (distinct peers) a pod is a member of."""
        if pod.namespace < 0:
            return [("monitoring",)]
        found: list[tuple[object, ...]] = []
        if pod.app in ("api", "web"):
            found.append(("local", pod.namespace, pod.app))  # db <- api, api <- web
        if self.cross and pod.app == "web":
            found.append(("team-web", pod.team))  # api of the team's namespaces <- web
        return found

    def span_of(self, group: tuple[object, ...]) -> int:
        """Nodes hosting the pods whose policies use ``group`` as a peer."""
        if not self._nodes:
            for pod in self.pods:
                if pod.namespace >= 0:
                    for key in (("all",), ("ns-app", pod.namespace, pod.app)):
                        self._nodes.setdefault(key, set()).add(pod.node)
                    self._nodes.setdefault(("team-app", pod.team, pod.app), set()).add(pod.node)
        kind = group[0]
        if kind == "monitoring":
            return len(self._nodes.get(("all",), ()))
        if kind == "local":
            target = "db" if group[2] == "api" else "api"
            return len(self._nodes.get(("ns-app", group[1], target), ()))
        return len(self._nodes.get(("team-app", group[1], "api"), ()))


@dataclass(frozen=True)
class GroupStats:
    groups_per_change: float  # group objects rewritten per pod change
    agents_per_change: float  # watch events the API server sends per pod change
    members_per_group: float  # pods (IPs) in a touched group, on average
    groups_per_node: float  # groups an agent holds
    ips_per_node: float  # group members an agent holds


def group_stats(cluster: Cluster, *, samples: int = 2000, seed: int = 2) -> GroupStats:
    """Per sampled pod change: groups touched, agents to tell (see module doc)."""
    members: dict[tuple[object, ...], int] = defaultdict(int)
    for pod in cluster.pods:
        for group in cluster.groups_of(pod):
            members[group] += 1
    spans = {g: cluster.span_of(g) for g in members}
    rand = random.Random(seed)
    touched = agents = sizes = 0
    for _ in range(samples):
        groups = cluster.groups_of(cluster.pods[rand.randrange(len(cluster.pods))])
        touched += len(groups)
        agents += sum(spans[g] for g in groups)
        sizes += sum(members[g] for g in groups)
    per_node = sum(spans.values()) / cluster.nodes
    ips = sum(spans[g] * members[g] for g in members) / cluster.nodes
    return GroupStats(
        groups_per_change=touched / samples,
        agents_per_change=agents / samples,
        members_per_group=sizes / max(touched, 1),
        groups_per_node=per_node,
        ips_per_node=ips,
    )
