"""``podwall lab`` end to end through its command line, on one 2-node lab
(bridge, the real agents) with the upstream 9-pod topology: status, probe
JSON shape and speed, kubectl against the lab, in-place label changes,
pods created and deleted through kubectl, ``probe --compare``, ``down``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns
from tests.conftest import kernel_ready

CLUSTER = Path(__file__).parent / "conformance" / "cluster.yaml"
DENY_X = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"namespace": "x", "name": "deny-ingress"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
}


def podwall(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "podwall", "lab", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podwall lab {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done


def kubectl(lab: str, *args: str, stdin: str | None = None) -> str:
    env = dict(os.environ, KUBECONFIG=f"{lab}/kubeconfig", KUBECACHEDIR=f"{lab}.kubecache")
    done = subprocess.run(
        ["kubectl", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


def write(folder: Path, name: str, *docs: dict[str, Any]) -> str:
    """JSON documents in a YAML stream (kubectl reads a bare ``y`` as true)."""
    path = folder / name
    path.write_text("\n---\n".join(json.dumps(doc) for doc in docs) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    directory = str(tmp_path_factory.mktemp("labcli") / "lab")
    try:
        podwall("up", "--dir", directory, "-f", str(CLUSTER))
        yield directory
    finally:
        podwall("down", "--dir", directory, check=False)


def status(lab: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(podwall("status", "--dir", lab, "-o", "json").stdout)
    return data


def test_status_lists_nodes_agents_and_pods_spread_over_nodes(lab: str) -> None:
    found = status(lab)
    assert found["phase"] == "ready"
    assert [node["name"] for node in found["nodes"]] == ["node-1", "node-2"]
    for node in found["nodes"]:
        assert node["netnsExists"] and node["agent"]["running"], node
        assert node["agent"]["status"].get("lastSync"), node
    pods = {pod["name"]: pod for pod in found["pods"]}
    assert sorted(pods) == [f"{ns}/{p}" for ns in "xyz" for p in "abc"]
    assert {pod["node"] for pod in pods.values()} == {"node-1", "node-2"}
    for pod in pods.values():
        subnet = "10.244.1." if pod["node"] == "node-1" else "10.244.2."
        assert pod["ips"][0].startswith(subnet), pod


def test_probe_json_shape_and_parallel_speed(lab: str, tmp_path: Path) -> None:
    podwall("apply", "--dir", lab, "-f", write(tmp_path, "deny.yaml", DENY_X))
    try:
        started = time.monotonic()
        out = podwall("probe", "--dir", lab, "--port", "80", "--protocol", "TCP", "-o", "json")
        elapsed = time.monotonic() - started
        found = json.loads(out.stdout)
        assert set(found) == {"port", "protocol", "pods", "reachable"}
        assert (found["port"], found["protocol"]) == (80, "TCP")
        assert len(found["pods"]) == 9
        assert all(set(row) == set(found["pods"]) for row in found["reachable"].values())
        blocked = [
            (src, dst)
            for src, row in found["reachable"].items()
            for dst, ok in row.items()
            if not ok
        ]
        expected = [
            (src, dst)
            for src in found["pods"]
            for dst in found["pods"]
            if dst.startswith("x/") and src != dst
        ]
        assert sorted(blocked) == sorted(expected)
        assert elapsed < 4.0, f"9x9 probe with 24 blocked pairs took {elapsed:.1f}s"
        compare = podwall("probe", "--dir", lab, "--port", "80", "--protocol", "TCP", "--compare")
        assert compare.stdout == ""
    finally:
        podwall("delete", "--dir", lab, "-f", str(tmp_path / "deny.yaml"))


def test_kubectl_works_against_the_lab(lab: str, tmp_path: Path) -> None:
    rule = {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "no-y-to-x"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"ns": "x"}}},
            "ingress": [
                {
                    "name": "deny-y",
                    "action": "Deny",
                    "from": [{"namespaces": {"matchLabels": {"ns": "y"}}}],
                }
            ],
        },
    }
    kubectl(lab, "apply", "-f", write(tmp_path, "rule.yaml", rule))
    table = kubectl(lab, "get", "firewallrules")
    header = table.splitlines()[0].split()
    assert header[:3] == ["NAME", "TIER", "PRIORITY"], table
    assert "no-y-to-x" in table and "Admin" in table
    assert "deny-ingress" not in kubectl(lab, "get", "networkpolicies", "-A")
    pods = json.loads(kubectl(lab, "get", "pods", "-n", "x", "-o", "json"))["items"]
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    kubectl(lab, "delete", "firewallrule", "no-y-to-x")
    assert "no-y-to-x" not in kubectl(lab, "get", "fwr")


def test_apply_relabels_pods_and_namespaces_in_place(lab: str, tmp_path: Path) -> None:
    before = {pod["name"]: pod for pod in status(lab)["pods"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "y", "name": "b", "labels": {"role": "db"}},
    }
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "z", "labels": {"tier": "gold"}},
    }
    podwall("apply", "--dir", lab, "-f", write(tmp_path, "relabel.yaml", pod, ns))
    try:
        got = json.loads(kubectl(lab, "get", "pod", "-n", "y", "b", "-o", "json"))
        assert got["metadata"]["labels"] == {"role": "db"}
        assert got["metadata"]["uid"] == before["y/b"].get("uid", got["metadata"]["uid"])
        after = {pod["name"]: pod for pod in status(lab)["pods"]}
        assert after["y/b"]["ips"] == before["y/b"]["ips"]
        assert after["y/b"]["netns"] == before["y/b"]["netns"]
        labels = json.loads(kubectl(lab, "get", "ns", "z", "-o", "json"))["metadata"]["labels"]
        assert labels == {"tier": "gold", "kubernetes.io/metadata.name": "z"}
    finally:
        podwall("apply", "--dir", lab, "-f", str(CLUSTER))
    restored = json.loads(kubectl(lab, "get", "pod", "-n", "y", "b", "-o", "json"))
    assert restored["metadata"]["labels"] == {"pod": "b"}


def test_kubectl_created_pod_runs_and_its_delete_removes_the_netns(
    lab: str, tmp_path: Path
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "x", "name": "extra", "labels": {"pod": "extra"}},
        "spec": {
            "nodeName": "node-2",
            "containers": [{"name": "c", "ports": [{"containerPort": 8080}]}],
        },
    }
    kubectl(lab, "apply", "-f", write(tmp_path, "pod.yaml", pod))
    deadline = time.monotonic() + 30
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and not found:
        found = {p["name"]: p for p in status(lab)["pods"]}.get("x/extra", {})
        time.sleep(0.1)
    assert found["node"] == "node-2" and found["ips"][0].startswith("10.244.2.")
    assert netns.exists(found["netns"])
    out = podwall("probe", "--dir", lab, "--port", "8080", "--protocol", "TCP", "-o", "json").stdout
    assert json.loads(out)["reachable"]["x/a"]["x/extra"] is True
    kubectl(lab, "delete", "pod", "-n", "x", "extra")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and netns.exists(found["netns"]):
        time.sleep(0.1)
    assert not netns.exists(found["netns"])
    assert "x/extra" not in {p["name"] for p in status(lab)["pods"]}


def test_usage_errors(lab: str, tmp_path: Path) -> None:
    missing = podwall("status", "--dir", str(tmp_path / "nothing"), "-o", "json", check=False)
    assert missing.returncode == 1 and "no lab in" in missing.stderr
    again = podwall("up", "--dir", lab, check=False)
    assert again.returncode == 1 and "already holds a lab" in again.stderr
    bad = podwall("probe", "--dir", lab, "--port", "80", "--protocol", "ICMP", check=False)
    assert bad.returncode == 2
