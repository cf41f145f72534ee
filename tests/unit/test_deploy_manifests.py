"""``deploy/`` renders with the real ``kubectl kustomize`` and every object is valid offline.

Each rendered object is validated (strict: unknown fields fail) against the
Kubernetes JSON schemas that ``kubernetes-validate`` ships, for the oldest
Kubernetes podwall supports and the newest the package knows; the CRDs as
apiextensions/v1 objects.  The example FirewallRule is validated against the
CRD's own openAPIV3Schema; the example conflists are installed into for real.
Then the DaemonSet is held to what the issue asks of it.
"""

from __future__ import annotations

import functools
import json
import pathlib
import shutil
import subprocess
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from firewall_install import conf as install

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "deploy" / "examples"
NAMESPACE = "podwall-system"
OLDEST = "1.30"
VERSIONS = [OLDEST, kubernetes_validate.utils.latest_version()]
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
KUBECTL = shutil.which("kubectl")


@functools.cache
def render(folder: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (the machine image ships it)")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / folder)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def kinds(folder: str) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in render(folder)}


def daemonset() -> dict[str, Any]:
    return kinds("deploy")["DaemonSet/podwall-agent"]


OBJECTS = [
    "Namespace/podwall-system",
    "CustomResourceDefinition/firewallrules.podwall.io",
    "CustomResourceDefinition/nodefirewalls.podwall.io",
    "ServiceAccount/podwall-agent",
    "ClusterRole/podwall-agent",
    "ClusterRoleBinding/podwall-agent",
    "Role/podwall-cni-watch",
    "RoleBinding/podwall-cni-watch",
    "DaemonSet/podwall-agent",
]


@pytest.mark.parametrize("folder", ["deploy", "deploy/k3s"])
def test_renders_exactly_the_podwall_objects(folder: str) -> None:
    assert sorted(kinds(folder)) == sorted(OBJECTS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", OBJECTS)
@pytest.mark.parametrize("folder", ["deploy", "deploy/k3s"])
def test_every_object_validates_against_the_kubernetes_schema(
    folder: str, name: str, version: str
) -> None:
    try:
        kubernetes_validate.validate(kinds(folder)[name], version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(
            f"{name} is not a valid Kubernetes {version} object: {exc.message} "
            f"at {'.'.join(map(str, exc.absolute_path))}"
        )


def test_the_validator_catches_mistakes() -> None:
    """Strict validation fails a misspelt field and a wrong type (the tests above can fail)."""
    broken = json.loads(json.dumps(daemonset()))
    broken["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)
    broken = json.loads(json.dumps(daemonset()))
    broken["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = [1]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


def test_names_namespaces_and_binding_fit_together() -> None:
    objects = kinds("deploy")
    for name, obj in objects.items():
        namespace = obj["metadata"].get("namespace")
        expected = None if obj["kind"] in CLUSTER_SCOPED else NAMESPACE
        assert namespace == expected, name
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "podwall", name
    binding = objects["ClusterRoleBinding/podwall-agent"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "podwall-agent",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podwall-agent", "namespace": NAMESPACE}
    ]
    assert daemonset()["spec"]["template"]["spec"]["serviceAccountName"] == "podwall-agent"
    labels = objects["Namespace/podwall-system"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_image_tag_is_the_project_version() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    spec = daemonset()["spec"]["template"]["spec"]
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    assert images == {f"podwall:{version}"}


def test_k3s_differs_only_in_the_cni_folders() -> None:
    base, k3s = daemonset(), kinds("deploy/k3s")["DaemonSet/podwall-agent"]
    paths = {
        v["name"]: v["hostPath"]["path"]
        for v in k3s["spec"]["template"]["spec"]["volumes"]
        if "hostPath" in v
    }
    assert paths["cni-bin"] == "/var/lib/rancher/k3s/data/cni"
    assert paths["cni-conf"] == "/var/lib/rancher/k3s/agent/etc/cni/net.d"
    for volume in k3s["spec"]["template"]["spec"]["volumes"]:
        if volume["name"] in ("cni-bin", "cni-conf"):
            volume["hostPath"] = next(
                v["hostPath"]
                for v in base["spec"]["template"]["spec"]["volumes"]
                if v["name"] == volume["name"]
            )
    assert k3s == base


def test_daemonset_is_what_the_issue_asks_for() -> None:
    ds = daemonset()
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    containers = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    assert [c["name"] for c in spec["initContainers"]] == ["install-cni"]
    for name, container in containers.items():
        security = container["securityContext"]
        assert not security.get("privileged"), name
        assert security["capabilities"]["drop"] == ["ALL"], name
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, name
    agent = containers["agent"]
    assert agent["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert "add" not in containers["install-cni"]["securityContext"]["capabilities"]
    assert "add" not in containers["cni-watch"]["securityContext"]["capabilities"]
    assert agent["env"] == [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    ]
    assert {"name": "metrics", "containerPort": 9101, "protocol": "TCP"} in agent["ports"]
    assert agent["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert agent["readinessProbe"]["httpGet"]["path"] == "/healthz"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["xtables-lock"]["hostPath"] == {
        "path": "/run/xtables.lock",
        "type": "FileOrCreate",
    }
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"


def test_cni_watch_names_its_own_daemonset_and_may_read_only_that() -> None:
    """``--uninstall-on-exit=if-daemonset-gone`` asks about the DaemonSet its env names."""
    objects, ds = kinds("deploy"), daemonset()
    spec = ds["spec"]["template"]["spec"]
    watch = next(c for c in spec["containers"] if c["name"] == "cni-watch")
    assert "--uninstall-on-exit=if-daemonset-gone" in watch["args"]
    assert watch["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "DAEMONSET_NAME", "value": ds["metadata"]["name"]},
    ]
    assert spec.get("automountServiceAccountToken", True), "the check needs the token"
    role = objects["Role/podwall-cni-watch"]
    assert role["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets"],
            "resourceNames": [ds["metadata"]["name"]],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": [ds["metadata"]["namespace"]],
            "verbs": ["get"],
        },
    ]
    binding = objects["RoleBinding/podwall-cni-watch"]
    assert binding["metadata"]["namespace"] == ds["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "podwall-cni-watch",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": NAMESPACE}
    ]


# ---------------------------------------------------------------- examples


def crd_schema(plural: str) -> dict[str, Any]:
    crd = kinds("deploy")[f"CustomResourceDefinition/{plural}.podwall.io"]
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_example_firewallrule_validates_against_the_crd() -> None:
    """Structure, types, enums and bounds (the CEL rules are the API server's job)."""
    schema = crd_schema("firewallrules")
    rule = yaml.safe_load((EXAMPLES / "firewallrule-deny-metadata.yaml").read_text())
    jsonschema.validate(rule, schema)
    wrong = json.loads(json.dumps(rule))
    wrong["spec"]["tier"] = "Cluster"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)


PRIMARIES = sorted(p.name for p in EXAMPLES.glob("10-*.conflist") if ".podwall." not in p.name)


@pytest.mark.parametrize("name", PRIMARIES)
def test_install_chains_podwall_into_each_example(name: str, tmp_path: pathlib.Path) -> None:
    original = json.loads((EXAMPLES / name).read_text())
    shutil.copy(EXAMPLES / name, tmp_path / name)
    install.install_conf(str(tmp_path), install.build_entry({}))
    chained = json.loads((tmp_path / name).read_text())
    assert chained["plugins"][:-1] == original["plugins"]
    assert chained["plugins"][-1] == {"type": "podwall"}
    assert {k: v for k, v in chained.items() if k != "plugins"} == {
        k: v for k, v in original.items() if k != "plugins"
    }
    if (EXAMPLES / name.replace(".conflist", ".podwall.conflist")).exists():
        shown = json.loads((EXAMPLES / name.replace(".conflist", ".podwall.conflist")).read_text())
        assert shown == chained, "the example of an installed conflist is out of date"
    install.uninstall_conf(str(tmp_path))
    assert json.loads((tmp_path / name).read_text()) == original
