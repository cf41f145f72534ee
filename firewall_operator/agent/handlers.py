"""The agent's kopf handlers: login, start-up, probe, cleanup; nothing else.

Only ``on.login``, ``on.startup``, ``on.probe`` and ``on.cleanup`` are used:
no create/update/delete/resume handlers, daemons or timers (those put
annotations and finalizers on every object, once per node), and no
``on.event`` either: the kinds of ``RESOURCES`` are listed and watched by the
agent itself (``watching``: one LIST per kind, stall detection, sweeps after
re-lists), which kopf's per-object machinery could not do at 100k pods.
Handlers are ``async`` where they touch the loop that owns the cache, and they
are registered on a private ``kopf.OperatorRegistry`` bound to one ``Agent``.

Pods are watched once, cluster-wide, into slim entries: every remote pod is
needed anyway (peer sets), and local pods are the cached pods whose endpoint
records exist.  Which kinds are watched is the agent's choice
(``cache.BASE_KINDS``, Nodes included, for ``nodes`` peers, plus
``cache.UPSTREAM_KINDS`` with ``--upstream-policy``); a kind whose CRD is
missing is listed as empty (see ``watching``).
"""

from __future__ import annotations

from typing import Any, Protocol

import kopf

from firewall_operator.agent.cache import ClusterCache, Kind

#: the watched kinds: (apiVersion, plural); a new kind also needs a parser in ``cache``
RESOURCES: dict[Kind, tuple[str, str]] = {
    "namespaces": ("v1", "namespaces"),
    "pods": ("v1", "pods"),
    "networkpolicies": ("networking.k8s.io/v1", "networkpolicies"),
    "firewallrules": ("podwall.io/v1alpha1", "firewallrules"),
    "nodes": ("v1", "nodes"),
    "clusternetworkpolicies": ("policy.networking.k8s.io/v1alpha2", "clusternetworkpolicies"),
    "adminnetworkpolicies": ("policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies"),
    "baselineadminnetworkpolicies": (
        "policy.networking.k8s.io/v1alpha1",
        "baselineadminnetworkpolicies",
    ),
}


class AgentLike(Protocol):
    """What the handlers need of the agent (``main.Agent``)."""

    cache: ClusterCache

    def changed(self) -> None: ...
    def login(self, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None: ...
    async def start(self, settings: kopf.OperatorSettings) -> None: ...
    async def stop(self) -> None: ...
    def probe(self) -> dict[str, Any]: ...


def build_registry(agent: AgentLike) -> kopf.OperatorRegistry:
    """A registry with the agent's handlers only."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry, id="login")
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        return agent.login(settings)

    @kopf.on.startup(registry=registry, id="start")
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        await agent.start(settings)

    @kopf.on.probe(registry=registry, id="sync")
    def probe(**_: Any) -> dict[str, Any]:
        return agent.probe()  # raises when syncs stopped: /healthz answers 500

    @kopf.on.cleanup(registry=registry, id="stop")
    async def cleanup(**_: Any) -> None:
        await agent.stop()

    return registry
