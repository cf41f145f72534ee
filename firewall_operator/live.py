"""Read a live cluster for the CLI (``podwall explain``, ``podwall status``).

``read(info, kinds)`` LISTs each kind (in pages) with the agent's REST client
and returns the objects with their ``kind`` set, as ``cluster.Snapshot.
from_documents`` and the status report take them.  A kind whose API is not
served (404: the CRD is not installed) gives no objects and a note; any other
failure raises ``ClusterReadError``.  Reads only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import kopf

from firewall_operator.agent.errors import KubeApiError
from firewall_operator.agent.kubeapi import KubeApi
from firewall_operator.errors import ClusterReadError

Json = dict[str, Any]
#: kind → (collection path, the CRD that serves it, or "" for built-ins)
PATHS: dict[str, tuple[str, str]] = {
    "Namespace": ("/api/v1/namespaces", ""),
    "Pod": ("/api/v1/pods", ""),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1/networkpolicies", ""),
    "FirewallRule": ("/apis/podwall.io/v1alpha1/firewallrules", "firewallrules.podwall.io"),
    "NodeFirewall": ("/apis/podwall.io/v1alpha1/nodefirewalls", "nodefirewalls.podwall.io"),
    "Node": ("/api/v1/nodes", ""),
    "ClusterNetworkPolicy": (
        "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
        "clusternetworkpolicies.policy.networking.k8s.io",
    ),
    "AdminNetworkPolicy": (
        "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
        "adminnetworkpolicies.policy.networking.k8s.io",
    ),
    "BaselineAdminNetworkPolicy": (
        "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies",
        "baselineadminnetworkpolicies.policy.networking.k8s.io",
    ),
}
POLICY_KINDS = (
    "Namespace",
    "Pod",
    "Node",
    "NetworkPolicy",
    "FirewallRule",
    "ClusterNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
)


async def _list(api: KubeApi, kind: str, notes: list[str]) -> list[Json]:
    path, crd = PATHS[kind]
    items: list[Json] = []
    try:
        async for page, _ in api.list_pages(path):
            items += [{**item, "kind": kind} for item in page]
    except KubeApiError as exc:
        if exc.status == 404 and crd:
            notes.append(f"the cluster does not serve {kind} (CRD {crd} not installed)")
            return []
        if exc.status in (401, 403):
            raise ClusterReadError(f"not allowed to list {kind}: {exc}") from exc
        raise ClusterReadError(f"cannot list {kind} from {api.server}: {exc}") from exc
    return items


async def _read(
    info: kopf.ConnectionInfo, kinds: Sequence[str]
) -> tuple[dict[str, list[Json]], list[str]]:
    api = KubeApi(info)
    notes: list[str] = []
    try:
        found = {kind: await _list(api, kind, notes) for kind in kinds}
    finally:
        await api.close()
    return found, notes


def read(
    info: kopf.ConnectionInfo, kinds: Sequence[str] = POLICY_KINDS
) -> tuple[Mapping[str, list[Json]], list[str]]:
    """Every object of ``kinds`` (kind → objects), and notes (see module doc)."""
    unknown = [kind for kind in kinds if kind not in PATHS]
    if unknown:
        raise ValueError(f"no API path known for {unknown}")
    return asyncio.run(_read(info, kinds))
