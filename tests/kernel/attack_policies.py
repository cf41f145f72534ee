"""The attack lab's policies, and its pods as Kubernetes objects.

* ``victims-admit-trusted``: victims ``v`` admit only trusted pods; an Admin
  FirewallRule denies attackers on top.
* ``attackers-reach-pods-only``: attackers ``m`` may send to pod ranges only
  (not to nodes, the outside host or link-local addresses).
* ``trusted-reach-pods-nodes-outside``: trusted pods ``t`` may send to pods,
  the underlay (nodes, outside host) and link-local addresses.
* ``walled``: ``egress: []`` for the walled pods ``e``; ``deny-all``:
  ``ingress: []`` for ``d`` pods.  Open pods ``o`` have no policy.

Test support only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NAMESPACE = "lab"
ROLE_LABEL = {
    "m": "attacker",
    "v": "victim",
    "t": "trusted",
    "o": "open",
    "e": "walled",
    "d": "denyall",
}
PODS4, PODS6 = "10.244.0.0/16", "fd00:244::/32"
#: (key, role, network, node index, IPs) of a lab pod
PodFacts = tuple[str, str, str, int, tuple[str, ...]]


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": NAMESPACE, "name": name},
        "spec": spec,
    }


def _role(role: str) -> dict[str, Any]:
    return {"matchLabels": {"role": role}}


def _blocks(*cidrs: str) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


POLICIES: list[dict[str, Any]] = [
    _policy(
        "victims-admit-trusted",
        {
            "podSelector": _role("victim"),
            "ingress": [{"from": [{"podSelector": _role("trusted")}]}],
        },
    ),
    _policy(
        "attackers-reach-pods-only",
        {
            "podSelector": _role("attacker"),
            "policyTypes": ["Egress"],
            "egress": [{"to": _blocks(PODS4, PODS6)}],
        },
    ),
    _policy(
        "trusted-reach-pods-nodes-outside",
        {
            "podSelector": _role("trusted"),
            "policyTypes": ["Egress"],
            "egress": [
                {"to": _blocks(PODS4, PODS6, "192.168.77.0/24", "fd00:77::/64", "fe80::/10")}
            ],
        },
    ),
    _policy("walled", {"podSelector": _role("walled"), "policyTypes": ["Egress"], "egress": []}),
    _policy("deny-all", {"podSelector": _role("denyall"), "ingress": []}),
    {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "victims-never-hear-attackers"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": _role("victim")}},
            "ingress": [
                {
                    "name": "attackers",
                    "action": "Deny",
                    "from": [{"pods": {"namespaceSelector": {}, "podSelector": _role("attacker")}}],
                }
            ],
        },
    },
]


def documents(pods: Iterable[PodFacts]) -> list[dict[str, Any]]:
    """The Namespace, one Pod object per lab pod, and ``POLICIES``."""
    docs: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": {"ns": NAMESPACE}}}
    ]
    for key, role, network, node, ips in pods:
        labels = {"role": ROLE_LABEL[role], "network": network}
        docs.append({
            "kind": "Pod",
            "metadata": {"namespace": NAMESPACE, "name": key, "uid": f"uid-{key}",
                         "labels": labels},
            "spec": {"nodeName": f"node-{node}", "containers": [{"ports": []}]},
            "status": {"phase": "Running", "podIPs": [{"ip": ip} for ip in ips]},
        })  # fmt: skip
    return docs + POLICIES
