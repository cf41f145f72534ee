"""``status.conditions`` of the upstream cluster policies (ClusterNetworkPolicy,
AdminNetworkPolicy, BaselineAdminNetworkPolicy), written once per generation.

The upstream API defines ``status.conditions`` as a list of
``metav1.Condition`` and leaves their types to implementations (its schema
has no other status field, so counts go into the message).  podwall writes
one condition, type ``Accepted``:

* ``True``, reason ``Accepted``: enforced as written; the message counts the
  ingress and egress rules in force;
* ``False``, reason ``UnsupportedField``: some rules use what podwall cannot
  enforce (``domainNames``, unknown peers or protocols) and fail closed as the
  API prescribes; the message says which and how, and counts the rest;
* ``False``, reason ``Invalid``: the object breaks the schema; its subject
  pods are isolated in the directions it declares (fail closed).

Conditions of other types (another implementation's) are kept.  As for
FirewallRules (``status``), the condition is the same on every node, so a
node writes only when the object's cached condition differs from the desired
one, after a per-node jitter, with a JSON patch that ``test``s the
resourceVersion: one node wins, the others get 409/422 and write nothing.
Only the winner posts a Warning event, once per generation that is not
accepted.  Never touches the kernel; ``accepted_condition`` is pure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from firewall_operator import fwrule
from firewall_operator.agent.cache import UPSTREAM_KINDS, ClusterCache, Kind, RuleMeta, rule_meta
from firewall_operator.agent.errors import KubeApiError
from firewall_operator.agent.handlers import RESOURCES
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.agent.status import JSON_PATCH, jitter, now_iso, post_warning
from firewall_operator.agent.watching import collection_path

log = logging.getLogger(__name__)
TYPE = "Accepted"
Condition = tuple[str, str, str, int]  # status, reason, message, observedGeneration


def _counts(rule: fwrule.FirewallRule) -> str:
    return f"{len(rule.ingress)} ingress and {len(rule.egress)} egress rules in force"


def accepted_condition(rule: fwrule.FirewallRule, generation: int) -> Condition:
    """The ``Accepted`` condition podwall reports for ``rule`` (see module doc)."""
    errors = sorted({p.reason for p in rule.problems if p.severity == "error"})
    if errors:
        return ("False", "Invalid", "podwall: " + "; ".join(errors)[:4000], generation)
    notes = [p.reason for p in rule.problems if p.severity == "warning"]
    if notes:
        text = f"podwall: {_counts(rule)}; " + "; ".join(notes)
        return ("False", "UnsupportedField", text[:4000], generation)
    return ("True", "Accepted", f"podwall: enforced as written, {_counts(rule)}", generation)


def desired_status(
    rule: fwrule.FirewallRule, meta: RuleMeta, others: list[Any], *, now: str
) -> dict[str, Any] | None:
    """The status to write (``others``: the object's conditions of other
    types, kept), or None when the object already carries ours."""
    status, reason, message, gen = accepted_condition(rule, meta.generation)
    if meta.valid == (status, reason, message, gen):
        return None
    since = meta.transition if meta.valid is not None and meta.valid[0] == status else now
    ours = {
        "type": TYPE,
        "status": status,
        "observedGeneration": gen,
        "lastTransitionTime": since or now,
        "reason": reason,
        "message": message,
    }
    return {"conditions": [*others, ours]}


class UpstreamStatusWriter:
    """Writes the upstream policies' conditions in the background (``run``);
    ``wake`` after every sync report."""

    def __init__(
        self,
        api: KubeApi,
        cache: ClusterCache,
        *,
        node: str,
        min_interval: float = 1.0,
        spread: float = 2.0,
    ) -> None:
        self.api, self.cache, self.node = api, cache, node
        self.min_interval, self.spread = min_interval, spread
        self.events_posted = 0
        self._attempted: dict[tuple[Kind, str], Condition] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.write_all()
            await asyncio.sleep(self.min_interval)

    def pending(self) -> list[tuple[Kind, str]]:
        """(kind, name) of every cached policy whose condition is not ours yet."""
        found = []
        for kind in UPSTREAM_KINDS:
            for rule, meta in self.cache.rules(kind):
                wanted = accepted_condition(rule, meta.generation)
                if meta.valid != wanted and self._attempted.get((kind, rule.name)) != wanted:
                    found.append((kind, rule.name))
        return found

    async def write_all(self) -> None:
        pending = self.pending()
        start = time.monotonic()
        for kind, name in sorted(pending, key=lambda p: jitter(self.node, p[1], self.spread)):
            delay = jitter(self.node, name, self.spread) - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await self._write(kind, name)

    async def _write(self, kind: Kind, name: str) -> None:
        entry = self.cache.entries[kind].get(("", name))
        if entry is None:
            return
        rule, meta = entry[1]
        path = f"{collection_path(*RESOURCES[kind])}/{name}"
        try:
            current = await self.api.request("GET", path)
        except KubeApiError as exc:
            if exc.status != 404:
                log.warning("cannot read %s %s: %s", rule.kind, name, exc)
            return
        conditions = (current.get("status") or {}).get("conditions") or []
        others = [c for c in conditions if isinstance(c, Mapping) and c.get("type") != TYPE]
        fresh = rule_meta(current, TYPE)
        wanted = accepted_condition(rule, meta.generation)
        if fresh.generation != meta.generation:
            return  # the cache is behind: its next event brings this back
        status = desired_status(rule, fresh, others, now=now_iso())
        if status is None:  # another node's write arrived meanwhile
            self._attempted[(kind, name)] = wanted
            return
        version = (current.get("metadata") or {}).get("resourceVersion")
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/status", "value": status},
        ]
        try:
            await self.api.request("PATCH", f"{path}/status", body=patch, content_type=JSON_PATCH)
        except KubeApiError as exc:
            if exc.status in (404, 409, 422):  # gone, or another node was first
                self._attempted[(kind, name)] = wanted
            else:
                log.warning("cannot write %s %s status: %s", rule.kind, name, exc)
            return
        self._attempted[(kind, name)] = wanted
        if wanted[0] == "False":
            await self._warn(rule, meta, wanted)

    async def _warn(self, rule: fwrule.FirewallRule, meta: RuleMeta, wanted: Condition) -> None:
        version = "v1alpha2" if rule.kind == "ClusterNetworkPolicy" else "v1alpha1"
        involved = {
            "apiVersion": f"policy.networking.k8s.io/{version}",
            "kind": rule.kind,
            "name": rule.name,
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
        }
        reason = "NotAccepted" if wanted[1] == "Invalid" else "FailingClosed"
        message = f"generation {meta.generation}: {wanted[2]}"
        if await post_warning(self.api, self.node, involved, reason, message):
            self.events_posted += 1
