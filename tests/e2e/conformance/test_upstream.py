"""The upstream conformance tests through the kernel, in one 2-node lab with
the upstream topology: network-policy-api v0.2.0 (ClusterNetworkPolicy) and
v0.1.8 (AdminNetworkPolicy, BaselineAdminNetworkPolicy), node peers
included, each poke checked against the kernel and ``podwall explain``.  The
default run takes a quick subset that covers every rule shape (all actions,
tiers, protocols, priorities, NetworkPolicy integration, named ports, CIDR
and node peers); ``-m conformance_full`` runs all 48 tests.  In the same
lab: ``kubectl get cnp,anp,banp`` shows the upstream columns, and one intent
written as a FirewallRule and as a ClusterNetworkPolicy gives the same
kernel matrix."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from firewall_lab.lab import ops, probing
from tests import upstream_conformance as uc
from tests.e2e.conformance import harness
from tests.e2e.conformance.upstream_harness import UpstreamLab, running_lab

CASES = [case for release in uc.RELEASES for case in uc.load(release)]
QUICK = {
    "v0.2.0-CNPAdminTierGress",
    "v0.2.0-CNPBaselineTierGress",
    "v0.2.0-CNPAdminTierIntegration",
    "v0.2.0-CNPAdminTierPriorityField",
    "v0.2.0-CNPAdminTierEgressNodePeers",
    "v0.2.0-CNPBaselineTierEgressNodePeers",
    "v0.2.0-CNPAdminTierEgressInlineCIDRPeers",
    "v0.2.0-CNPAdminTierEgressNamedPort",
    "v0.2.0-CNPBaselineTierIngressNamedPort",
    "v0.1.8-AdminNetworkPolicyIntegration",
    "v0.1.8-BaselineAdminNetworkPolicyGress",
    "v0.1.8-AdminNetworkPolicyEgressNodePeers",
}


def ids(case: uc.Case) -> str:
    return f"{case.release}-{case.id}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamLab]:
    yield from running_lab(tmp_path_factory, "upstream")


@pytest.mark.parametrize(
    "case",
    harness.marked([{"id": ids(c), "case": c} for c in CASES], QUICK),  # type: ignore[arg-type]
)
def test_case(lab: UpstreamLab, case: dict[str, Any]) -> None:
    lab.reset()
    failures = lab.run_case(case["case"])
    assert not failures, f"{case['id']} ({case['case'].source}):\n" + "\n".join(failures)


def test_kubectl_get_shows_the_upstream_columns(lab: UpstreamLab) -> None:
    lab.reset()
    cases = {ids(c): c for c in CASES}
    docs = cases["v0.2.0-CNPAdminTierIntegration"].documents()
    docs += [
        d for d in cases["v0.1.8-AdminNetworkPolicyIntegration"].documents() if "Admin" in d["kind"]
    ]
    ops.apply_docs(lab.directory, docs)
    env = dict(os.environ, KUBECONFIG=os.path.join(lab.directory, "kubeconfig"))
    env["KUBECACHEDIR"] = os.path.join(lab.directory, "kubecache")
    out = subprocess.run(
        ["kubectl", "get", "cnp,anp,banp"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    headers = [block.splitlines()[0].split() for block in out.stdout.split("\n\n") if block.strip()]
    assert headers == [
        ["NAME", "TIER", "PRIORITY", "AGE"],
        ["NAME", "PRIORITY", "AGE"],
        ["NAME", "AGE"],
    ]
    assert (
        "clusternetworkpolicy.policy.networking.k8s.io/pass-example   Admin      10" in out.stdout
    )


HOUSE = "conformance-house"
#: one intent, FirewallRule and ClusterNetworkPolicy spellings in FORMS
INTENT = """
tier: Admin
priority: 20
subject: {namespaces: {matchLabels: {conformance-house: gryffindor}}}
ingress:
- name: ravenclaw-web-and-dns
  action: <allow>
  from: [{namespaces: {matchLabels: {conformance-house: ravenclaw}}}]
  <web_and_dns>
- name: hufflepuff-to-netpol
  action: Pass
  from:
  - pods:
      namespaceSelector: {matchLabels: {conformance-house: hufflepuff}}
      podSelector: {}
- name: no-one-else
  action: Deny
  from: [{namespaces: {}}]
egress:
- name: no-node-ports
  action: Deny
  to: [{nodes: {matchLabels: {kubernetes.io/os: linux}}}]
  <node_ports>
- name: no-8080-on-node-2-pods
  action: Deny
  to: [{networks: [10.244.2.0/24]}]
  <port_8080>
"""
FORMS = {
    "FirewallRule": {
        "allow": "Allow",
        "web_and_dns": "ports: [{namedPort: web}, {portNumber: {protocol: UDP, port: 53}}]",
        "node_ports": "ports: [{portRange: {protocol: TCP, start: 34345, end: 34346}}]",
        "port_8080": "ports: [{portNumber: {protocol: TCP, port: 8080}}]",
    },
    "ClusterNetworkPolicy": {
        "allow": "Accept",
        "web_and_dns": "protocols:"
        " [{destinationNamedPort: web}, {udp: {destinationPort: {number: 53}}}]",
        "node_ports": "protocols: [{tcp: {destinationPort: {range: {start: 34345, end: 34346}}}}]",
        "port_8080": "protocols: [{tcp: {destinationPort: {number: 8080}}}]",
    },
}
API = {
    "FirewallRule": "podwall.io/v1alpha1",
    "ClusterNetworkPolicy": "policy.networking.k8s.io/v1alpha2",
}
NETPOL = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"namespace": f"{uc.NAMESPACE_PREFIX}gryffindor", "name": "hufflepuff-8080"},
    "spec": {
        "podSelector": {},
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {HOUSE: "hufflepuff"}}}],
                "ports": [{"port": 8080}],
            }
        ],
    },
}
PORTS = [(80, "TCP"), (8080, "TCP"), (53, "UDP"), (34345, "TCP"), (34346, "TCP")]


def intent(kind: str) -> dict[str, Any]:
    text = INTENT
    for key, value in FORMS[kind].items():
        text = text.replace(f"<{key}>", value)
    spec = yaml.safe_load(text)
    return {"apiVersion": API[kind], "kind": kind, "metadata": {"name": "guard"}, "spec": spec}


def served() -> set[tuple[str, int, str]]:
    return {
        (f"{d['metadata']['namespace']}/{d['metadata']['name']}", p["containerPort"], p["protocol"])
        for d in uc.cluster_docs()
        if d["kind"] == "Pod"
        for c in d["spec"]["containers"]
        for p in c["ports"]
    }


def matrices(lab: UpstreamLab) -> dict[str, Any]:
    assert lab.layout is not None and lab.client is not None
    found = {}
    for port, protocol in PORTS:
        kernel = probing.kernel_matrix(lab.layout, port=port, protocol=protocol)  # type: ignore[arg-type]
        model = probing.model_matrix(lab.client, port=port, protocol=protocol)
        found[f"{port}/{protocol}"] = (kernel["reachable"], model["reachable"])
    return found


def test_firewallrule_and_clusternetworkpolicy_same_kernel_matrix(lab: UpstreamLab) -> None:
    lab.reset()
    results = {}
    for kind in FORMS:
        ops.apply_docs(lab.directory, [NETPOL, intent(kind)])
        results[kind] = matrices(lab)
        ops.delete_docs(lab.directory, [intent(kind)])
    fwr, cnp = results["FirewallRule"], results["ClusterNetworkPolicy"]
    for port in fwr:
        assert fwr[port][0] == cnp[port][0], f"{port}: the kernel matrices differ"
        assert fwr[port][1] == cnp[port][1], f"{port}: explain differs"
    listening = served()
    checked = denied = 0
    for key, (kernel, model) in fwr.items():
        number, protocol = key.split("/")
        for src, row in kernel.items():
            for dst, probed in row.items():
                if src != dst and (dst, int(number), protocol) in listening:
                    checked += 1
                    denied += not probed
                    assert probed == model[src][dst], f"{key} {src} -> {dst}: kernel vs explain"
    assert checked > 200 and 20 < denied < checked, (checked, denied)
