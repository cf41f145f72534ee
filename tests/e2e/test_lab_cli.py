"""``podwall lab`` end to end through its command line, on one 2-node lab
(bridge, the real agents) with the upstream 9-pod topology: status, probe
JSON shape and speed, kubectl against the lab, in-place label changes,
pods created and deleted through kubectl, ``probe --compare``, refused
versus dropped probes, live ``podwall explain`` against the lab, ``lab
logs``, NetworkPolicy Warning events, and (last: it stops an agent)
``podwall status`` realization."""

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
from firewall_lab.lab import state
from tests.conftest import kernel_ready

CLUSTER = Path(__file__).parent / "conformance" / "cluster.yaml"
DENY_X = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"namespace": "x", "name": "deny-ingress"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
}


def podwall(*args: str, check: bool = True, top: bool = False) -> subprocess.CompletedProcess[str]:
    """``podwall lab ARGS`` (``top``: ``podwall ARGS``)."""
    done = subprocess.run(
        [sys.executable, "-m", "podwall", *([] if top else ["lab"]), *args],
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
        out = podwall("probe", "--dir", lab, "--port", "80/TCP", "-o", "json")
        elapsed = time.monotonic() - started
        found = json.loads(out.stdout)
        assert set(found) == {"port", "protocol", "pods", "reachable", "family", "outcomes"}
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


def test_probe_tells_refused_from_dropped(lab: str, tmp_path: Path) -> None:
    """Nobody listens on 9: unblocked pairs are refused (reached), the pairs
    into x are dropped; --compare counts a refusal as passing the firewall."""
    podwall("apply", "--dir", lab, "-f", write(tmp_path, "deny.yaml", DENY_X))
    try:
        found = json.loads(podwall("probe", "--dir", lab, "--port", "9/TCP", "-o", "json").stdout)
        outcomes = {
            (src, dst): got
            for src, row in found["outcomes"].items()
            for dst, got in row.items()
            if src != dst
        }
        assert {got for (_, dst), got in outcomes.items() if dst.startswith("x/")} == {"dropped"}
        assert {got for (_, dst), got in outcomes.items() if not dst.startswith("x/")} == {
            "refused"
        }
        assert not any(ok for row in found["reachable"].values() for ok in row.values())
        table = podwall("probe", "--dir", lab, "--port", "9", "-o", "table").stdout
        assert " rf " in table and "rf refused (reached, nothing listening)" in table
        compare = podwall("probe", "--dir", lab, "--port", "9/TCP", "--compare")
        assert compare.stdout == ""
    finally:
        podwall("delete", "--dir", lab, "-f", str(tmp_path / "deny.yaml"))


def test_status_table(lab: str) -> None:
    out = podwall("status", "--dir", lab, "-o", "table").stdout
    lines = out.splitlines()
    assert lines[0].startswith(f"lab {lab}: ready")
    assert any(line.split()[:3] == ["node-1", "podwall", "yes"] for line in lines), out
    assert any(line.startswith("x/a ") and "Running" in line for line in lines), out


def explain(lab: str, *args: str) -> subprocess.CompletedProcess[str]:
    return podwall("explain", *args, check=False, top=True)


def test_live_explain_answers_as_the_files_do(lab: str, tmp_path: Path) -> None:
    podwall("apply", "--dir", lab, "-f", write(tmp_path, "deny.yaml", DENY_X))
    try:
        dumped = tmp_path / "cluster.json"
        dumped.write_text(
            kubectl(lab, "get", "ns,pods,networkpolicies,firewallrules", "-A", "-o", "json")
        )
        live = ["--kubeconfig", f"{lab}/kubeconfig"]
        files = ["-f", str(dumped)]
        matrix = ["--matrix", "--port", "80/TCP", "-o", "json"]
        from_live, from_files = explain(lab, *live, *matrix), explain(lab, *files, *matrix)
        assert (from_live.returncode, from_files.returncode) == (0, 0), from_live.stderr
        assert json.loads(from_live.stdout) == json.loads(from_files.stdout)
        assert json.loads(from_live.stdout)["reachable"]["y/a"]["x/a"] is False
        ip = next(pod for pod in status(lab)["pods"] if pod["name"] == "x/b")["ips"][0]
        for source in (live, files):
            denied = explain(lab, *source, "--from", "y/a", "--to", "x/a", "--port", "80")
            assert denied.returncode == 1, denied.stderr
            assert "x/a is isolated for ingress by NetworkPolicy x/deny-ingress" in denied.stdout
            allowed = explain(lab, *source, "--from", "x/a", "--to", "y/b", "--port", "80")
            assert allowed.returncode == 0 and "ALLOWED" in allowed.stdout
            by_ip = explain(lab, *source, "--from", "y/a", "--to", ip, "--port", "80")
            assert by_ip.returncode == 1 and f"{ip} is pod x/b" in by_ip.stdout
    finally:
        podwall("delete", "--dir", lab, "-f", str(tmp_path / "deny.yaml"))


def test_lab_logs_show_what_the_agents_read(lab: str) -> None:
    """A hand-written NFLOG rule (the group and tag form the agent reads) on
    x/a's node: one line per new connection to x/a, pods named by IP."""
    found = status(lab)
    target = next(pod for pod in found["pods"] if pod["name"] == "x/a")
    node = next(n for n in found["nodes"] if n["name"] == target["node"])
    rule = [
        "-p",
        "tcp",
        "-d",
        target["ips"][0],
        "--dport",
        "80",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "NFLOG",
        "--nflog-group",
        "20567",
        "--nflog-prefix",
        "pw:labtest",
    ]
    netns.run(node["netns"], ["iptables", "-I", "FORWARD", "1", *rule])
    follower = subprocess.Popen(
        [sys.executable, "-m", "podwall", "lab", "logs", "--dir", lab, "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        podwall("probe", "--dir", lab, "--port", "80/TCP", "-o", "json")
        others = {pod["name"] for pod in found["pods"]} - {"x/a"}
        deadline = time.monotonic() + 15
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(lines) < len(others):
            time.sleep(0.2)
            text = podwall("logs", "--dir", lab, "--node", node["name"]).stdout
            lines = [json.loads(line) for line in text.splitlines()]
        assert sorted(line["source"]["pod"] for line in lines) == sorted(others), lines
        for line in lines:
            assert line["tag"] == "pw:labtest" and line["node"] == node["name"]
            assert line["destination"] == {"ip": target["ips"][0], "port": 80, "pod": "x/a"}
            assert line["protocol"] == "TCP" and line["policy"] is None  # no ruleset tags
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["tag"] == "pw:labtest"
    finally:
        follower.terminate()
        follower.wait(10)
        netns.run(node["netns"], ["iptables", "-D", "FORWARD", *rule])


def test_one_warning_event_per_problematic_policy_generation(lab: str, tmp_path: Path) -> None:
    named = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "y", "name": "no-such-port"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "nosuch"}]}]},
    }
    podwall("apply", "--dir", lab, "-f", write(tmp_path, "named.yaml", named))
    try:
        deadline = time.monotonic() + 20
        mine: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not mine:
            time.sleep(0.5)
            events = json.loads(kubectl(lab, "get", "events", "-n", "y", "-o", "json"))["items"]
            mine = [e for e in events if e["involvedObject"]["name"] == "no-such-port"]
        time.sleep(4)  # every node has had its turn (jitter spread 2 s)
        events = json.loads(kubectl(lab, "get", "events", "-n", "y", "-o", "json"))["items"]
        mine = [e for e in events if e["involvedObject"]["name"] == "no-such-port"]
        assert len(mine) == 1, mine
        assert (mine[0]["type"], mine[0]["reason"]) == ("Warning", "PolicyProblem")
        assert "no pod has a port named" in mine[0]["message"]
    finally:
        podwall("delete", "--dir", lab, "-f", str(tmp_path / "named.yaml"))


def realization(lab: str) -> tuple[int, dict[str, Any]]:
    done = podwall(
        "status", "--kubeconfig", f"{lab}/kubeconfig", "-o", "json", check=False, top=True
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_status_reports_n_minus_one_of_n_with_an_agent_stopped(lab: str, tmp_path: Path) -> None:
    """Last in this module: it stops node-2's agent for good."""
    policy = {**DENY_X, "metadata": {"namespace": "z", "name": "after-stop"}}
    code, before = realization(lab)
    assert code == 0 and [n["name"] for n in before["nodes"]] == ["node-1", "node-2"]
    pid = state.load(lab).pids["agent/node-2"]
    os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
    kubectl(lab, "apply", "-f", write(tmp_path, "after.yaml", policy))
    deadline = time.monotonic() + 30
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and found.get("programmed") != "1/2":
        time.sleep(0.5)
        code, report = realization(lab)
        found = next((o for o in report["objects"] if o["name"] == "z/after-stop"), {})
    assert (found["programmed"], found["missing"], code) == ("1/2", ["node-2"], 1)
    text = podwall("status", "--kubeconfig", f"{lab}/kubeconfig", check=False, top=True).stdout
    assert any("z/after-stop" in line and "1/2" in line for line in text.splitlines()), text
