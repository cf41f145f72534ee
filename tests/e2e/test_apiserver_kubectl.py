"""The API server double driven by the real kubectl: apply, get, tables, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.agent_env import NODEFIREWALL_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures"
CRDS = Path(__file__).parents[2] / "crds"
EXPLAIN_FIXTURE = Path(__file__).parents[1] / "fixtures" / "explain-policies.yaml"

NAMESPACE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""
POD = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web, %s}
spec:
  containers:
  - name: c
    image: busybox
    ports: [{containerPort: 80, name: http}]
"""
POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"""
WIDGET = """
apiVersion: test.podwall.io/v1alpha1
kind: Widget
metadata: {name: %s}
spec: {tier: %s, priority: 7}
"""


def header(table: str) -> list[str]:
    return table.splitlines()[0].split()


def test_apply_creates_then_updates_in_place(kubectl: Any) -> None:
    assert "namespace/shop created" in kubectl("apply", "-f", "-", stdin=NAMESPACE)
    assert "pod/web created" in kubectl("apply", "-f", "-", stdin=POD % "tier: front")
    before = kubectl.json("get", "pod", "-n", "shop", "web")
    out = kubectl("apply", "-f", "-", stdin=POD % "tier: back")
    assert "pod/web configured" in out
    after = kubectl.json("get", "pod", "-n", "shop", "web")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["labels"] == {"app": "web", "tier": "back"}
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert "unchanged" in kubectl("apply", "-f", "-", stdin=POD % "tier: back")


@pytest.mark.parametrize(
    ("args", "columns"),
    [
        (("get", "pods", "-n", "shop"), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        (("get", "pods", "-A"), ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        (("get", "ns"), ["NAME", "STATUS", "AGE"]),
        (
            ("get", "pods", "-n", "shop", "-o", "wide"),
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        ),
    ],
    ids=["pods", "pods-all-namespaces", "namespaces", "pods-wide"],
)
def test_get_tables(kubectl: Any, args: tuple[str, ...], columns: list[str]) -> None:
    kubectl("apply", "-f", "-", stdin=NAMESPACE)
    kubectl("apply", "-f", "-", stdin=POD % "tier: front")
    out = kubectl(*args)
    assert header(out) == columns
    assert "web" in out or "shop" in out


def test_get_yaml_and_label_selectors(kubectl: Any) -> None:
    kubectl("apply", "-f", "-", stdin=NAMESPACE)
    kubectl("apply", "-f", "-", stdin=POD % "tier: front")
    assert "kind: Pod" in kubectl("get", "pod", "-n", "shop", "web", "-o", "yaml")
    assert "web" in kubectl("get", "pods", "-n", "shop", "-l", "tier in (front,x)")
    assert "web" not in kubectl("get", "pods", "-n", "shop", "-l", "tier!=front")
    assert "web" in kubectl("get", "pods", "-A", "-l", "app,!missing")
    assert "kubernetes.io/metadata.name=shop" in kubectl("get", "ns", "shop", "--show-labels")


def test_networkpolicy_table_and_delete(kubectl: Any) -> None:
    kubectl("apply", "-f", "-", stdin=NAMESPACE)
    kubectl("apply", "-f", "-", stdin=POLICY)
    out = kubectl("get", "netpol", "-n", "shop")
    assert header(out) == ["NAME", "POD-SELECTOR", "AGE"]
    assert "app=web" in out
    assert "deleted" in kubectl("delete", "-f", "-", stdin=POLICY)
    assert "No resources found" in kubectl("get", "netpol", "-n", "shop", check=False)


def test_crd_printer_columns(kubectl: Any) -> None:
    kubectl("apply", "-f", str(FIXTURES / "widgets-crd.yaml"))
    kubectl("apply", "-f", "-", stdin=WIDGET % ("w-admin", "Admin"))
    kubectl(
        "patch",
        "widget",
        "w-admin",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"conditions":[{"type":"Valid","status":"True"}]}}',
    )
    out = kubectl("get", "widgets")
    assert header(out) == ["NAME", "TIER", "PRIORITY", "VALID", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["w-admin", "Admin", "7", "True"]
    assert "w-admin" in kubectl("get", "wd")  # short name
    bad = kubectl("apply", "-f", "-", stdin=WIDGET % ("w-bad", "Nope"), check=False)
    assert 'Unsupported value: "Nope"' in bad


def test_delete_pod_and_namespace(kubectl: Any) -> None:
    kubectl("apply", "-f", "-", stdin=NAMESPACE)
    kubectl("apply", "-f", "-", stdin=POD % "tier: front")
    assert 'pod "web" deleted' in kubectl("delete", "pod", "-n", "shop", "web")
    assert 'namespace "shop" deleted' in kubectl("delete", "ns", "shop")
    assert "shop" not in kubectl("get", "ns")


@pytest.mark.parametrize(
    ("crd", "plural", "columns"),
    [
        (
            "firewallrules.podwall.io.yaml",
            "firewallrules",
            ["NAME", "TIER", "PRIORITY", "INGRESS", "EGRESS", "VALID", "AGE"],
        ),
        (
            "nodefirewalls.podwall.io.yaml",
            "nodefirewalls",
            NODEFIREWALL_COLUMNS,
        ),
    ],
    ids=["firewallrules", "nodefirewalls"],
)
def test_project_crds(kubectl: Any, crd: str, plural: str, columns: list[str]) -> None:
    path = CRDS / crd
    if not path.exists():
        pytest.skip(f"{path} is not written yet")
    kubectl("apply", "-f", str(path))
    kind = yaml.safe_load(path.read_text())["spec"]["names"]["kind"]
    body = {"apiVersion": "podwall.io/v1alpha1", "kind": kind, "metadata": {"name": "probe"}}
    if kind == "FirewallRule":
        docs = yaml.safe_load_all((EXPLAIN_FIXTURE).read_text())
        body = next(d for d in docs if d and d.get("kind") == "FirewallRule")
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))
    assert header(kubectl("get", plural)) == columns


def test_kubectl_explain_reads_the_crd_schema(kubectl: Any) -> None:
    """kubectl explain finds the kind through /openapi/v3 (the group's document
    names it on each operation), then the schema and its descriptions."""
    kubectl("apply", "-f", str(CRDS / "firewallrules.podwall.io.yaml"))
    kubectl("api-resources")  # refresh kubectl's discovery cache
    out = kubectl("explain", "fwr.spec")
    assert "KIND:       FirewallRule" in out and "GROUP:      podwall.io" in out
    assert "priority\t<integer> -required-" in out
    assert "Lower numbers are evaluated first" in out
    action = kubectl("explain", "firewallrules.spec.egress.action")
    assert "Allow ends evaluation allowed" in action and "Pass" in action
    missing = kubectl("explain", "fwr.spec.nothing", check=False)
    assert 'field "nothing" does not exist' in missing
