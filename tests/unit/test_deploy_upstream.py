"""``deploy/with-upstream-policy`` and its components render with the real
``kubectl kustomize``: podwall's objects plus the vendored upstream CRDs (as
they are in ``crds/upstream``), the upstream-policy ClusterRole and binding,
and ``PODWALL_UPSTREAM_POLICY=1`` on the agent, nothing else changed; every
object is a valid Kubernetes object.  The example ClusterNetworkPolicy is
valid for its CRD and means what the example FirewallRule means."""

from __future__ import annotations

import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from firewall_operator import cluster, evaluate, fwrule, upstream
from tests.unit.test_deploy_manifests import EXAMPLES, OBJECTS, ROOT, VERSIONS, kinds

FOLDER = "deploy/with-upstream-policy"
UPSTREAM_CRDS = [
    f"CustomResourceDefinition/{plural}.policy.networking.k8s.io"
    for plural in ("clusternetworkpolicies", "adminnetworkpolicies", "baselineadminnetworkpolicies")
]
RBAC = [
    "ClusterRole/podwall-agent-upstream-policy",
    "ClusterRoleBinding/podwall-agent-upstream-policy",
]


def test_renders_podwall_plus_the_upstream_objects() -> None:
    assert sorted(kinds(FOLDER)) == sorted(OBJECTS + UPSTREAM_CRDS + RBAC)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", UPSTREAM_CRDS + RBAC + ["DaemonSet/podwall-agent"])
def test_added_objects_validate(name: str, version: str) -> None:
    try:
        kubernetes_validate.validate(kinds(FOLDER)[name], version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.absolute_path))}")


def test_crds_are_the_vendored_ones() -> None:
    for name in UPSTREAM_CRDS:
        plural = name.split("/")[1].split(".")[0]
        path = ROOT / "crds" / "upstream" / f"policy.networking.k8s.io_{plural}.yaml"
        assert kinds(FOLDER)[name] == yaml.safe_load(path.read_text()), name


def test_daemonset_differs_only_in_the_flag() -> None:
    base = kinds("deploy")["DaemonSet/podwall-agent"]
    with_flag = json.loads(json.dumps(kinds(FOLDER)["DaemonSet/podwall-agent"]))
    (agent,) = [
        c for c in with_flag["spec"]["template"]["spec"]["containers"] if c["name"] == "agent"
    ]
    assert {"name": "PODWALL_UPSTREAM_POLICY", "value": "1"} in agent["env"]
    agent["env"].remove({"name": "PODWALL_UPSTREAM_POLICY", "value": "1"})
    assert with_flag == base


def test_rbac_only_component_adds_no_crd() -> None:
    """For clusters that already have the upstream CRDs (from their CNI)."""
    rendered = kinds("deploy/components/upstream-policy-rbac")
    assert sorted(rendered) == sorted(RBAC)


def test_example_cnp_is_valid_and_means_what_the_firewallrule_means() -> None:
    cnp = yaml.safe_load((EXAMPLES / "clusternetworkpolicy-deny-metadata.yaml").read_text())
    crd = kinds(FOLDER)[UPSTREAM_CRDS[0]]
    (version,) = crd["spec"]["versions"]
    jsonschema.validate(cnp, version["schema"]["openAPIV3Schema"])
    fwr = yaml.safe_load((EXAMPLES / "firewallrule-deny-metadata.yaml").read_text())
    as_cnp, as_fwr = upstream.parse(cnp), fwrule.parse(fwr)
    assert as_cnp.problems == () and as_fwr.problems == ()
    pods = [
        cluster.Pod("kube-system", "dns", labels={}, ips=("10.0.0.10",)),
        cluster.Pod("app", "web", ips=("10.0.1.5",)),
        cluster.Pod("app", "meta", ips=("169.254.169.254",), host_network=True),
    ]
    checks: list[tuple[Any, ...]] = [
        (src, dst, port, proto) for src in pods for dst in pods for port, proto in
        ((53, "UDP"), (53, "TCP"), (80, "TCP"))
    ]  # fmt: skip

    def verdicts(rule: fwrule.FirewallRule, **kind: Any) -> list[bool]:
        snap = cluster.Snapshot.build(pods=pods, **kind)
        judge = evaluate.Evaluator(snap)
        return [judge.verdict(*check).allowed for check in checks]

    assert verdicts(as_cnp, cluster_policies=[as_cnp]) == verdicts(as_fwr, firewall_rules=[as_fwr])
    assert False in verdicts(as_cnp, cluster_policies=[as_cnp])
