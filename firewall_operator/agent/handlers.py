"""The agent's kopf handlers: feed the slim cache, mark the state dirty, nothing else.

Only ``on.event`` (returning None: kopf writes nothing to objects),
``on.login``, ``on.startup``, ``on.probe`` and ``on.cleanup`` are used; no
create/update/delete/resume handlers, daemons or timers (those put
annotations and finalizers on every object, once per node).  Handlers are
``async`` so they run on the loop that owns the cache, and they are
registered on a private ``kopf.OperatorRegistry`` bound to one ``Agent``.

Pods are watched once, cluster-wide: kopf watches a resource through one
stream with one field selector, so "local pods by ``spec.nodeName`` + remote
pods in a slim cache" cannot be two pod watches.  One cluster-wide watch into
slim entries is the smaller design: every remote pod is needed anyway (peer
ipsets), and local pods are the cached pods whose endpoint records exist.

``build_registry`` registers the kinds it is given: ``cache.BASE_KINDS``
(Nodes included, for ``nodes`` peers), plus ``cache.UPSTREAM_KINDS`` when the
agent runs with ``--upstream-policy``.  A kind whose CRD is missing is left
unwatched by kopf (with its own warning).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, Protocol

import kopf

from firewall_operator.agent.cache import BASE_KINDS, ClusterCache, Kind

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
    def saw_listing(self, kind: Kind) -> None: ...
    def login(self, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None: ...
    async def start(self, settings: kopf.OperatorSettings) -> None: ...
    async def stop(self) -> None: ...
    def probe(self) -> dict[str, Any]: ...


def _event_handler(agent: AgentLike, kind: Kind) -> Callable[..., Awaitable[None]]:
    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        event_type = event.get("type")
        if event_type is None:
            agent.saw_listing(kind)
        obj = event.get("object")
        if isinstance(obj, dict) and agent.cache.observe(kind, event_type, obj):
            agent.changed()

    on_event.__name__ = f"cache_{kind}"
    return on_event


def build_registry(agent: AgentLike, kinds: Collection[Kind] = BASE_KINDS) -> kopf.OperatorRegistry:
    """A registry with the agent's handlers only, watching ``kinds``."""
    registry = kopf.OperatorRegistry()
    for kind, (api_version, plural) in RESOURCES.items():
        if kind not in kinds:
            continue
        kopf.on.event(api_version, plural, registry=registry, id=f"cache-{kind}")(
            _event_handler(agent, kind)
        )

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
