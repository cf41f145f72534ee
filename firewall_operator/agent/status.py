"""What the agent reports: its NodeFirewall, FirewallRule conditions, Warning events.

* ``NodeFirewall/<node>`` (cluster-scoped, created when missing): its status
  is replaced after syncs with the last report (backend, endpoints, chains,
  rules, sets, set entries, last sync, ``observedResourceVersion`` (the
  cache's highest resourceVersion when the last good sync began: the lab
  waits for it), last error, problems, programmed generations of FirewallRules
  (by name) and of the upstream cluster policies (by ``Kind/name``), and
  ``watch``: whether every watched kind is current or which are behind since
  when, with the LISTs per kind), at most once per ``min_interval``; the
  latest state always gets written (a burst of syncs ends with a write of its
  last one, within ``min_interval``), and FirewallRule writes run beside it,
  never delaying it.
* FirewallRule ``status`` (``observedGeneration``, rule counts, condition
  ``Valid``) is the same on every node, so it is written *once*: a node
  writes only when the cached status differs from the desired one, after a
  per-node jitter (other nodes' writes usually arrive first), with a JSON patch
  that ``test``s the resourceVersion.  One node wins; the losers get 409/422
  and write nothing else.  Only the winner posts the Warning event for an
  invalid rule: one event per rule generation, not one per node.
* NetworkPolicies with problems get one Warning event per generation too
  (``policy_events``: the event's name is the compare-and-set).
* Realization: ``programmedGenerations`` (FirewallRule name → generation) and
  ``programmedPolicies`` (NetworkPolicy ``ns/name`` → generation) say what the
  node's kernel holds; ``podwall status`` adds them up over the nodes.  No
  object gets an "N/M nodes" write: that would be N writes per change (or a
  leader watching every NodeFirewall); the reader aggregates instead.

Never touches the kernel.  ``desired_rule_status`` is pure.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from firewall_operator import fwrule
from firewall_operator.agent import policy_events
from firewall_operator.agent.cache import ClusterCache, RuleMeta
from firewall_operator.agent.errors import KubeApiError
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.agent.reconcile import SyncReport
from firewall_operator.agent.watching import WatchState

log = logging.getLogger(__name__)
GROUP_PATH = "/apis/podwall.io/v1alpha1"
EVENTS_PATH = "/api/v1/namespaces/default/events"
JSON_PATCH = "application/json-patch+json"
MAX_PROBLEMS = 100

MAX_PROGRAMMED = 20_000  # programmedPolicies entries (~40 bytes each) in one status


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def valid_condition(rule: fwrule.FirewallRule, generation: int) -> tuple[str, str, str, int]:
    """(status, reason, message, observedGeneration) of the ``Valid`` condition."""
    errors = sorted({p.reason for p in rule.problems if p.severity == "error"})
    if not errors:
        return ("True", "Valid", "accepted by podwall", generation)
    return ("False", "Invalid", "; ".join(errors)[:4000], generation)


def desired_rule_status(
    rule: fwrule.FirewallRule, meta: RuleMeta, *, now: str
) -> dict[str, Any] | None:
    """The status to write, or None when the object already carries it."""
    status, reason, message, gen = valid_condition(rule, meta.generation)
    if meta.valid == (status, reason, message, gen):
        return None
    since = meta.transition if meta.valid is not None and meta.valid[0] == status else now
    return {
        "observedGeneration": meta.generation,
        "ingressRules": meta.ingress_rules,
        "egressRules": meta.egress_rules,
        "conditions": [
            {
                "type": "Valid",
                "status": status,
                "observedGeneration": gen,
                "lastTransitionTime": since or now,
                "reason": reason,
                "message": message,
            }
        ],
    }


def iso(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def watch_status(states: list[WatchState]) -> dict[str, Any]:
    """``status.watch``: Current, or Behind with the kinds, since when and why."""
    behind = [s for s in states if not s.listed or s.behind_since is not None]
    found: dict[str, Any] = {
        "state": "Behind" if behind else "Current",
        "listings": {s.kind: s.listings for s in states},
    }
    if behind:
        since = [s.behind_since for s in behind if s.behind_since is not None]
        found["behind"] = sorted(s.kind for s in behind)
        found["reason"] = "; ".join(f"{s.kind}: {s.reason or 'not listed yet'}" for s in behind)[
            :1024
        ]
        if since:
            found["since"] = iso(min(since))
    return found


def node_status(
    report: SyncReport | None,
    *,
    backend: str,
    last_ok: SyncReport | None,
    watches: list[WatchState] | None = None,
) -> dict[str, Any]:
    """NodeFirewall status from the last sync (and the last good one) and the watches."""
    good = report if report is not None and report.ok else last_ok
    error = "" if report is None or report.ok else report.error
    status: dict[str, Any] = {"backend": backend, "lastError": error}
    if watches:
        status["watch"] = watch_status(watches)
    if good is not None:
        status.update(
            endpoints=good.endpoints,
            chains=good.chains,
            rules=good.rules,
            sets=good.sets,
            setEntries=good.set_entries,
            observedResourceVersion=str(good.observed_version),
            lastSync=iso(good.finished),
            problems=[str(p) for p in good.problems][:MAX_PROBLEMS],
            problemCount=len(good.problems),
            programmedGenerations=dict(sorted(good.generations.items())),
            programmedPolicies=dict(sorted(good.policy_generations.items())[:MAX_PROGRAMMED]),
            programmedCount=len(good.generations) + len(good.policy_generations),
        )
        if len(good.policy_generations) > MAX_PROGRAMMED:
            status["programmedPoliciesTruncated"] = True
    return status


def jitter(node: str, name: str, spread: float) -> float:
    digest = hashlib.sha256(f"{node}/{name}".encode()).digest()
    return spread * int.from_bytes(digest[:2], "big") / 65536


class StatusWriter:
    """Writes reports in the background (``run``); ``report`` hands over the latest."""

    def __init__(
        self,
        api: KubeApi,
        cache: ClusterCache,
        *,
        node: str,
        backend: str,
        min_interval: float = 1.0,
        spread: float = 2.0,
    ) -> None:
        self.api, self.cache, self.node, self.backend = api, cache, node, backend
        self.min_interval, self.spread = min_interval, spread
        self.latest: SyncReport | None = None
        self.last_ok: SyncReport | None = None
        self.watches: list[WatchState] = []
        self.written: tuple[Any, ...] | None = None
        self.events_posted = 0
        self._unenforced_posted = ""  # the bridge-netfilter error last posted
        self._repairs: tuple[str, ...] = ()  # what syncs repaired on the node, not yet posted
        self._attempted: dict[str, tuple[str, str, str, int]] = {}
        self._wake = asyncio.Event()
        self._rules_wake = asyncio.Event()
        self.policy_warnings = policy_events.PolicyWarnings(
            api, node=node, jitter=lambda name: jitter(node, name, spread)
        )

    def report(self, report: SyncReport) -> None:
        self.latest = report
        self._repairs += report.warnings  # kept until posted, whatever comes next
        if report.ok:
            self.last_ok = report
        self._wake.set()
        self._rules_wake.set()

    def watch_report(self, states: list[WatchState]) -> None:
        """A watch fell behind or caught up: write it (before any sync, too)."""
        self.watches = states
        self._wake.set()

    async def run(self) -> None:
        await asyncio.gather(self._run_node(), self._run_rules())

    async def _run_node(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            report = self.latest
            if report is None and not self.watches:
                continue
            try:
                await self.write_node(report)
            except KubeApiError as exc:
                log.warning("cannot write NodeFirewall %s: %s", self.node, exc)
                self._wake.set()  # try again after the pause
            if report is not None:
                await self.warn_node(report)
            await asyncio.sleep(self.min_interval)

    async def _run_rules(self) -> None:
        while True:
            await self._rules_wake.wait()
            self._rules_wake.clear()
            await self.write_rules()
            await self.warn_policies()
            await asyncio.sleep(self.min_interval)

    async def warn_policies(self) -> None:
        """Post the NetworkPolicy Warning events the last good sync calls for."""
        if self.last_ok is None:
            return
        cached = {key: value for key, (_, value) in self.cache.entries["networkpolicies"].items()}
        pending = policy_events.warnings(self.last_ok.problems, cached)
        await self.policy_warnings.post(pending, now=now_iso())

    async def write_node(self, report: SyncReport | None) -> None:
        status = node_status(
            report, backend=self.backend, last_ok=self.last_ok, watches=self.watches
        )
        if self.written is None:
            await self._ensure_node_object()
        patch = [{"op": "add", "path": "/status", "value": status}]
        path = f"{GROUP_PATH}/nodefirewalls/{self.node}/status"
        await self.api.request("PATCH", path, body=patch, content_type=JSON_PATCH)
        self.written = (report.sequence if report is not None else 0,)

    async def warn_node(self, report: SyncReport) -> None:
        """A Warning event on the NodeFirewall when syncs had to repair the
        node (bridge netfilter switched off), and once per message while
        bridged pod traffic goes unfiltered."""
        if self._repairs:
            repairs, self._repairs = self._repairs, ()
            reason, message = "BridgeNetfilterRepaired", "; ".join(dict.fromkeys(repairs))
        elif report.unenforced and report.error != self._unenforced_posted:
            repairs, reason, message = (), "BridgeNetfilterOff", report.error
            self._unenforced_posted = report.error
        else:
            if not report.unenforced:
                self._unenforced_posted = ""
            return
        involved = {"apiVersion": "podwall.io/v1alpha1", "kind": "NodeFirewall", "name": self.node}
        if await post_warning(self.api, self.node, involved, reason, message):
            self.events_posted += 1
        elif repairs:
            self._repairs = repairs + self._repairs  # post them with the next report
        else:
            self._unenforced_posted = ""

    async def _ensure_node_object(self) -> None:
        path = f"{GROUP_PATH}/nodefirewalls"
        try:
            await self.api.request("GET", f"{path}/{self.node}")
            return
        except KubeApiError as exc:
            if exc.status != 404:
                raise
        body = {
            "apiVersion": "podwall.io/v1alpha1",
            "kind": "NodeFirewall",
            "metadata": {"name": self.node},
            "spec": {"nodeName": self.node},
        }
        try:
            await self.api.request("POST", path, body=body)
        except KubeApiError as exc:
            if exc.status != 409:
                raise

    async def write_rules(self) -> None:
        """Write the FirewallRule statuses that differ (see module doc)."""
        pending = self._pending()
        if not pending:
            return
        start = time.monotonic()
        for name in sorted(pending, key=lambda n: jitter(self.node, n, self.spread)):
            delay = jitter(self.node, name, self.spread) - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await self._write_rule(name)

    def _pending(self) -> list[str]:
        found = []
        for rule, meta in self.cache.rules():
            wanted = valid_condition(rule, meta.generation)
            if meta.valid != wanted and self._attempted.get(rule.name) != wanted:
                found.append(rule.name)
        return found

    async def _write_rule(self, name: str) -> None:
        entry = self.cache.entries["firewallrules"].get(("", name))
        if entry is None:
            return
        rule, meta = entry[1]
        status = desired_rule_status(rule, meta, now=now_iso())
        if status is None:
            return  # another node's write arrived meanwhile
        wanted = valid_condition(rule, meta.generation)
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
            {"op": "add", "path": "/status", "value": status},
        ]
        path = f"{GROUP_PATH}/firewallrules/{name}/status"
        try:
            await self.api.request("PATCH", path, body=patch, content_type=JSON_PATCH)
        except KubeApiError as exc:
            if exc.status in (404, 409, 422):  # gone, or another node was first
                self._attempted[name] = wanted
            else:
                log.warning("cannot write FirewallRule %s status: %s", name, exc)
            return
        self._attempted[name] = wanted
        condition = status["conditions"][0]
        if condition["status"] == "False":
            await self._warn(name, meta, condition)

    async def _warn(self, name: str, meta: RuleMeta, condition: Mapping[str, Any]) -> None:
        await self._post_event(
            kind="FirewallRule",
            name=name,
            uid=meta.uid,
            version=meta.resource_version,
            reason="InvalidFirewallRule",
            message=f"generation {meta.generation}: {condition['message']}",
        )

    async def _post_event(
        self, *, kind: str, name: str, uid: str, version: str, reason: str, message: str
    ) -> None:
        involved = {"apiVersion": "podwall.io/v1alpha1", "kind": kind, "name": name}
        if uid:
            involved |= {"uid": uid, "resourceVersion": version}
        if await post_warning(self.api, self.node, involved, reason, message):
            self.events_posted += 1


async def post_warning(
    api: KubeApi, node: str, involved: dict[str, Any], reason: str, message: str
) -> bool:
    """Post one Warning Event about ``involved`` from this node's agent (in
    ``default``, as the node's RBAC allows); False, logged, when the API
    refuses it: an event is never worth failing a sync for."""
    stamp = now_iso()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": "default"},
        "involvedObject": involved,
        "type": "Warning",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "podwall-agent", "host": node},
        "reportingComponent": "podwall-agent",
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        await api.request("POST", EVENTS_PATH, body=event)
    except KubeApiError as exc:
        log.warning("cannot post the event for %s %s: %s", involved["kind"], involved["name"], exc)
        return False
    return True
