"""A generated cluster for the compile/apply benchmarks (deterministic).

``cluster_documents(pods=10_000, policies=500, rules=50, local=100)`` returns
Kubernetes documents: namespaces ``ns-<i>`` (labels ``team``, ``env``), pods
spread over them (labels ``app``, ``tier``; named ports ``http``, ``metrics``,
``dns``), the first ``local`` of them on ``node-0``, NetworkPolicies selecting
by ``app``/``tier`` with namespace, pod, ipBlock and named-port peers, and
Admin/Baseline FirewallRules.  The policies do not depend on the pod count,
so rules per local pod must not either.  ``records`` gives the CNI endpoint
records of the local pods.  Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from firewall_plugin.endpoints import EndpointRecord

NODE = "node-0"
NAMESPACES = 100
APPS = 20
BENCH_PORT = 7000


def pod_ips(index: int) -> tuple[str, str]:
    v4 = ipaddress.IPv4Address("10.128.0.2") + index
    return str(v4), f"fd00:128::{index + 2:x}"


def pod_document(index: int, *, local: int) -> dict[str, Any]:
    namespace = f"ns-{index % NAMESPACES}"
    labels = {"app": f"app-{index % APPS}", "tier": ("web", "api", "db")[index % 3]}
    ports = [
        {"name": "http", "containerPort": 8080 + index % 3, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9100, "protocol": "TCP"},
        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
    ]
    return {
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": f"pod-{index}", "uid": f"u{index}",
                     "labels": labels},
        "spec": {"nodeName": NODE if index < local else f"node-{1 + index % 99}",
                 "containers": [{"ports": ports}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip} for ip in pod_ips(index)]},
    }  # fmt: skip


def namespace_document(index: int) -> dict[str, Any]:
    labels = {"team": f"team-{index % 10}", "env": ("prod", "dev")[index % 2]}
    return {"kind": "Namespace", "metadata": {"name": f"ns-{index}", "labels": labels}}


def _peer(index: int) -> dict[str, Any]:
    kind = index % 4
    if kind == 0:
        return {"namespaceSelector": {"matchLabels": {"team": f"team-{index % 10}"}}}
    if kind == 1:
        return {"podSelector": {"matchLabels": {"app": f"app-{(index * 7) % APPS}"}}}
    if kind == 2:
        return {
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In",
                                                  "values": ["web", "api"]}]},
        }  # fmt: skip
    return {"ipBlock": {"cidr": f"10.{64 + index % 32}.0.0/16",
                        "except": [f"10.{64 + index % 32}.{index % 200}.0/24"]}}  # fmt: skip


def _ports(index: int) -> list[dict[str, Any]]:
    if index % 3 == 0:
        return [{"port": "http"}]
    if index % 3 == 1:
        return [{"port": 8000 + index % 50, "endPort": 8100 + index % 50, "protocol": "TCP"}]
    return [{"port": 53, "protocol": "UDP"}, {"port": "metrics"}]


def policy_document(index: int) -> dict[str, Any]:
    namespace = f"ns-{index % NAMESPACES}"
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {"app": f"app-{index % APPS}"}},
        "ingress": [{"from": [_peer(index), _peer(index + 1)], "ports": _ports(index)}],
    }
    if index % 5 == 0:
        spec["policyTypes"] = ["Ingress", "Egress"]
        spec["egress"] = [{"to": [_peer(index + 2)], "ports": _ports(index + 1)}]
    return {"kind": "NetworkPolicy", "metadata": {"namespace": namespace, "name": f"np-{index}"},
            "spec": spec}  # fmt: skip


def firewall_rule_document(index: int) -> dict[str, Any]:
    tier = "Admin" if index % 2 == 0 else "Baseline"
    actions = ("Allow", "Pass", "Deny") if tier == "Admin" else ("Allow", "Deny")
    action = actions[index % len(actions)]
    peer: dict[str, Any] = (
        {"namespaces": {"matchLabels": {"team": f"team-{index % 10}"}}}
        if index % 3
        else {"networks": [f"192.168.{index}.0/24", f"fd00:ff:{index:x}::/48"]}
    )
    entry = {"name": "r", "action": action, "from": [peer],
             "ports": [{"portNumber": {"port": 23 if action == "Deny" else 443,
                                       "protocol": "TCP"}}]}  # fmt: skip
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": f"fw-{index}"},
        "spec": {"tier": tier, "priority": index * 10,
                 "subject": {"namespaces": {"matchLabels": {"env": ("prod", "dev")[index % 2]}}},
                 "ingress": [entry]},
    }  # fmt: skip


def bench_allow(namespace: str) -> dict[str, Any]:
    """Lets the packet-path benchmark's pods (pod-0 in ns-0, pod-1 in ns-1)
    talk on BENCH_PORT whatever the generated policies say."""
    anywhere: list[dict[str, Any]] = [{"namespaceSelector": {}}]
    ports = [{"port": BENCH_PORT}]
    return {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": "bench-allow"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [{"from": anywhere, "ports": ports}],
                 "egress": [{"to": anywhere, "ports": ports}]},
    }  # fmt: skip


def cluster_documents(
    *, pods: int = 10_000, policies: int = 500, rules: int = 50, local: int = 100
) -> list[dict[str, Any]]:
    docs = [namespace_document(i) for i in range(NAMESPACES)]
    docs += [pod_document(i, local=local) for i in range(pods)]
    docs += [policy_document(i) for i in range(policies)]
    docs += [firewall_rule_document(i) for i in range(rules)]
    docs += [bench_allow("ns-0"), bench_allow("ns-1")]
    return docs


def records(local: int = 100) -> list[EndpointRecord]:
    """Endpoint records of the local pods (pod-0 … pod-<local-1>)."""
    out = []
    for index in range(local):
        v4, v6 = pod_ips(index)
        out.append(
            EndpointRecord.make(
                container_id=f"c{index:06d}",
                ifname="eth0",
                podNamespace=f"ns-{index % NAMESPACES}",
                podName=f"pod-{index}",
                podUID=f"u{index}",
                ips=(f"{v4}/9", f"{v6}/64"),
                hostInterface=f"veth{index}",
            )
        )
    return out
