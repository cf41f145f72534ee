"""The vendored upstream CRDs in the API server double, driven by kubectl:
``kubectl apply -k crds/upstream``, the upstream printer columns for
``kubectl get cnp,anp,banp``, and the schema's own rules (CEL included)
refusing what a real API server refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

UPSTREAM = Path(__file__).parents[2] / "crds" / "upstream"
OBJECTS = """
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 7
  subject: {namespaces: {}}
  egress:
  - name: no-ssh-to-nodes
    action: Deny
    to: [{nodes: {}}]
    protocols: [{tcp: {destinationPort: {number: 22}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: legacy}
spec:
  priority: 3
  subject: {namespaces: {}}
  ingress: [{action: Allow, from: [{namespaces: {}}], ports: [{namedPort: web}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
"""
REFUSED = {
    "banp-not-default": (
        "kind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\n"
        "spec: {subject: {namespaces: {}}}",
        "Only one baseline admin network policy",
    ),
    "cnp-range-not-increasing": (
        "kind: ClusterNetworkPolicy\nmetadata: {name: r}\nspec: {tier: Admin, priority: 1,"
        " subject: {namespaces: {}}, ingress: [{action: Accept, from: [{namespaces: {}}],"
        " protocols: [{tcp: {destinationPort: {range: {start: 9, end: 9}}}}]}]}",
        "Start port must be less than End port",
    ),
    "cnp-allow-is-not-an-action": (
        "kind: ClusterNetworkPolicy\nmetadata: {name: a}\nspec: {tier: Admin, priority: 1,"
        " subject: {namespaces: {}}, ingress: [{action: Allow, from: [{namespaces: {}}]}]}",
        'Unsupported value: "Allow"',
    ),
    "cnp-named-port-to-networks": (
        "kind: ClusterNetworkPolicy\nmetadata: {name: named}\nspec: {tier: Admin, priority: 1,"
        " subject: {namespaces: {}}, egress: [{action: Accept, to: [{networks: [10.0.0.0/8]}],"
        " protocols: [{destinationNamedPort: web}]}]}",
        "cannot be set with namedPorts",
    ),
}


def header(table: str) -> list[str]:
    return table.splitlines()[0].split()


@pytest.fixture
def installed(kubectl: Any) -> Any:
    out = kubectl("apply", "-k", str(UPSTREAM))
    assert out.count("customresourcedefinition.apiextensions.k8s.io/") == 3
    return kubectl


def test_get_with_the_upstream_printer_columns(installed: Any) -> None:
    installed("apply", "-f", "-", stdin=OBJECTS)
    out = installed("get", "cnp,anp,banp")
    tables = [block for block in out.split("\n\n") if block.strip()]
    assert [header(t) for t in tables] == [
        ["NAME", "TIER", "PRIORITY", "AGE"],
        ["NAME", "PRIORITY", "AGE"],
        ["NAME", "AGE"],
    ]
    assert tables[0].splitlines()[1].split()[:3] == [
        "clusternetworkpolicy.policy.networking.k8s.io/guard",
        "Admin",
        "7",
    ]
    assert "legacy" in installed("get", "anp") and "default" in installed("get", "banp")


@pytest.mark.parametrize(("body", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_schema_refuses_what_upstream_refuses(installed: Any, body: str, message: str) -> None:
    version = "v1alpha1" if "AdminNetworkPolicy" in body else "v1alpha2"
    doc = f"apiVersion: policy.networking.k8s.io/{version}\n{body}\n"
    out = installed("apply", "-f", "-", stdin=doc, check=False)
    assert message in out, out
