"""One Warning Event per problematic NetworkPolicy generation, not one per node.

Every node finds the same problems (they come from the policy and the whole
cluster cache), and a NetworkPolicy has no status to compare-and-set on, so
the event itself is the compare-and-set: its name is derived from the policy,
its generation and a digest of the problems (``event_name``), and the API
server creates a name only once.  Each node POSTs after a per-node jitter;
the first wins (201), the others get 409 AlreadyExists and remember the
attempt.  A policy whose problems change within one generation gets one more
event (a new digest); one that is fixed gets none.

Never touches the kernel.  ``event_name`` and ``warnings`` are pure.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from firewall_operator import netpol
from firewall_operator.agent.errors import KubeApiError
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.problems import Problem

log = logging.getLogger(__name__)
REASON = "PolicyProblem"
MAX_MESSAGE = 1024


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    """The event one policy generation deserves."""

    policy: netpol.NetworkPolicy
    reasons: tuple[str, ...]

    @property
    def name(self) -> str:
        return event_name(self.policy, self.reasons)


def event_name(policy: netpol.NetworkPolicy, reasons: Iterable[str]) -> str:
    """``<policy>.podwall-<generation>-<digest>``: the same on every node."""
    digest = hashlib.sha256("\n".join(sorted(reasons)).encode()).hexdigest()[:10]
    return f"{policy.name[:200]}.podwall-{policy.generation}-{digest}"


def warnings(
    problems: Iterable[Problem], policies: Mapping[tuple[str, str], netpol.NetworkPolicy]
) -> list[PolicyWarning]:
    """The warnings the problems of a sync call for (policies still cached)."""
    found: dict[tuple[str, str], list[str]] = {}
    for problem in problems:
        if problem.kind == netpol.KIND and (problem.namespace, problem.name) in policies:
            found.setdefault((problem.namespace, problem.name), []).append(
                f"{problem.severity}: {problem.reason}"
            )
    return [
        PolicyWarning(policies[key], tuple(sorted(set(reasons)))) for key, reasons in found.items()
    ]


def event_body(warning: PolicyWarning, *, node: str, now: str) -> dict[str, Any]:
    policy = warning.policy
    message = f"generation {policy.generation}: " + "; ".join(warning.reasons)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": warning.name, "namespace": policy.namespace},
        "involvedObject": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "namespace": policy.namespace,
            "name": policy.name,
            "uid": policy.uid,
        },
        "type": "Warning",
        "reason": REASON,
        "message": message[:MAX_MESSAGE],
        "source": {"component": "podwall-agent", "host": node},
        "reportingComponent": "podwall-agent",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class PolicyWarnings:
    """Posts the events of the latest sync's problems (see module doc)."""

    def __init__(self, api: KubeApi, *, node: str, jitter: Any) -> None:
        self.api, self.node, self.jitter = api, node, jitter
        self.attempted: set[str] = set()
        self.posted = 0

    async def post(self, pending: Iterable[PolicyWarning], *, now: str) -> None:
        todo = sorted(
            (w for w in pending if w.name not in self.attempted),
            key=lambda w: self.jitter(w.name),
        )
        start = asyncio.get_running_loop().time()
        for warning in todo:
            delay = self.jitter(warning.name) - (asyncio.get_running_loop().time() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            await self._post(warning, now)

    async def _post(self, warning: PolicyWarning, now: str) -> None:
        path = f"/api/v1/namespaces/{warning.policy.namespace}/events"
        try:
            await self.api.request("POST", path, body=event_body(warning, node=self.node, now=now))
            self.posted += 1
        except KubeApiError as exc:
            if exc.status not in (404, 409):  # 409: another node was first
                log.warning("cannot post the event for %s: %s", warning.policy.key, exc)
                return
        self.attempted.add(warning.name)
