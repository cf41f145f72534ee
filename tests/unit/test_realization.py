"""Realization status without a cluster: what NodeFirewall reports, how
``podwall status`` adds them up, one Warning event per problematic
NetworkPolicy generation, and kubeconfig contexts for the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from firewall_operator import netpol, realization
from firewall_operator.agent import policy_events, reconcile, status
from firewall_operator.agent.errors import KubeApiError
from firewall_operator.errors import ClusterReadError
from firewall_operator.kubeconfig import connection
from firewall_operator.problems import Problem


def nfw(
    name: str, policies: dict[str, int], rules: dict[str, int], problems: list[str]
) -> dict[str, Any]:
    return {
        "kind": "NodeFirewall",
        "metadata": {"name": name},
        "status": {
            "backend": "iptables-nft",
            "lastSync": "2026-01-01T00:00:00Z",
            "programmedPolicies": policies,
            "programmedGenerations": rules,
            "problems": problems,
        },
    }


def obj(kind: str, name: str, generation: int, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "generation": generation}
    if namespace:
        meta["namespace"] = namespace
    return {"kind": kind, "metadata": meta}


def test_programmed_on_n_of_m_nodes() -> None:
    bad = "warning: NetworkPolicy x/named: ingress: no pod has a port named 'web'"
    nodes = [
        nfw("node-1", {"x/deny": 2, "x/named": 1}, {"no-web": 3}, [bad]),
        nfw("node-2", {"x/deny": 1, "x/named": 1}, {"no-web": 3}, [bad]),  # behind on x/deny
    ]
    report = realization.summarise(
        nodes,
        [
            obj("NetworkPolicy", "deny", 2, "x"),
            obj("NetworkPolicy", "named", 1, "x"),
            obj("FirewallRule", "no-web", 3),
            obj("FirewallRule", "new", 1),
        ],
    )
    found = {o.name: (len(o.programmed), o.missing, o.problems) for o in report.objects}
    assert found == {
        "no-web": (2, (), ()),
        "new": (0, ("node-1", "node-2"), ()),
        "x/deny": (1, ("node-2",), ()),
        "x/named": (2, (), ("warning: ingress: no pod has a port named 'web'",)),
    }
    assert not report.complete
    data = realization.to_json(report)
    assert [o["programmed"] for o in data["objects"]] == ["0/2", "2/2", "1/2", "2/2"]
    text = realization.to_text(report)
    assert "x/deny" in text and "1/2" in text and "node-2" in text


def test_complete_and_no_agents() -> None:
    done = realization.summarise(
        [nfw("n", {"x/a": 1}, {}, [])], [obj("NetworkPolicy", "a", 1, "x")]
    )
    assert done.complete
    empty = realization.summarise([], [])
    assert empty.notes == ("no NodeFirewall: no podwall agent has reported yet",)


def report(**kw: Any) -> reconcile.SyncReport:
    return reconcile.SyncReport(sequence=1, ok=True, full=True, finished=0.0, **kw)


def test_node_status_lists_programmed_policies() -> None:
    found = status.node_status(
        report(generations={"r": 2}, policy_generations={"x/a": 1, "x/b": 4}),
        backend="nft",
        last_ok=None,
    )
    assert found["programmedPolicies"] == {"x/a": 1, "x/b": 4}
    assert (found["programmedCount"], found["problemCount"]) == (3, 0)


def policy(name: str, generation: int) -> netpol.NetworkPolicy:
    return netpol.NetworkPolicy("x", name, generation=generation, uid=f"uid-{name}")


def test_event_names_are_per_generation_and_problems() -> None:
    a1, a2 = policy("a", 1), policy("a", 2)
    assert policy_events.event_name(a1, ["r"]) == policy_events.event_name(a1, ["r"])
    assert policy_events.event_name(a1, ["r"]) != policy_events.event_name(a2, ["r"])
    assert policy_events.event_name(a1, ["r"]) != policy_events.event_name(a1, ["s"])
    problems = [
        Problem("NetworkPolicy", "x", "a", "no pod has a port named 'web'", "warning"),
        Problem("NetworkPolicy", "x", "gone", "stale", "error"),
        Problem("FirewallRule", "", "r", "bad"),
    ]
    found = policy_events.warnings(problems, {("x", "a"): a1})
    assert [(w.policy.name, w.reasons) for w in found] == [
        ("a", ("warning: no pod has a port named 'web'",))
    ]


class FakeApi:
    """Answers POSTs like the API server: the first create wins, then 409."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.posts = 0

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        self.posts += 1
        name = kw["body"]["metadata"]["name"]
        if name in self.names:
            raise KubeApiError("exists", status=409)
        self.names.add(name)
        return {}


def test_one_event_per_generation_across_nodes() -> None:
    api = FakeApi()
    nodes = [
        policy_events.PolicyWarnings(api, node=f"n{i}", jitter=lambda name: 0.0)  # type: ignore[arg-type]
        for i in range(3)
    ]
    warning = policy_events.PolicyWarning(policy("a", 1), ("warning: no port",))

    async def every_node_twice() -> None:
        for _ in range(2):
            for node in nodes:
                await node.post([warning], now="2026-01-01T00:00:00Z")

    asyncio.run(every_node_twice())
    assert len(api.names) == 1 and api.posts == 3  # one each, the second round remembers
    assert sum(node.posted for node in nodes) == 1
    body = policy_events.event_body(warning, node="n1", now="t")
    assert body["involvedObject"]["uid"] == "uid-a" and body["type"] == "Warning"
    assert body["metadata"]["namespace"] == "x" and body["message"].startswith("generation 1: ")


def write_kubeconfig(folder: Path, **user: Any) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "one",
        "clusters": [
            {
                "name": "c1",
                "cluster": {"server": "https://one:6443", "certificate-authority": "ca.pem"},
            },
            {"name": "c2", "cluster": {"server": "http://two:8080"}},
        ],
        "users": [{"name": "u1", "user": user}, {"name": "u2", "user": {"token": "t2"}}],
        "contexts": [
            {"name": "one", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "two", "context": {"cluster": "c2", "user": "u2", "namespace": "x"}},
        ],
    }
    path = folder / "config"
    path.write_text(json.dumps(config))
    return path


def test_kubeconfig_contexts_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    path = write_kubeconfig(tmp_path, tokenFile="token")
    one = connection(str(path))
    assert (one.server, one.token) == ("https://one:6443", "from-file")
    assert one.ca_path == str(tmp_path / "ca.pem")
    two = connection(str(path), "two")
    assert (two.server, two.token, two.default_namespace) == ("http://two:8080", "t2", "x")
    with pytest.raises(ClusterReadError, match="no context three"):
        connection(str(path), "three")


def test_kubeconfig_exec_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text(
        "#!/bin/sh\n"
        'echo \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"exec-\'$1\'"}}\'\n'
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    path = write_kubeconfig(tmp_path, exec={"command": str(plugin), "args": ["abc"]})
    assert connection(str(path)).token == "exec-abc"
    failing = write_kubeconfig(tmp_path, exec={"command": "/bin/false"})
    with pytest.raises(ClusterReadError, match="exec plugin /bin/false failed"):
        connection(str(failing))


def test_no_kubeconfig_outside_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterReadError, match="not in a pod"):
        connection(None)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing")]))
    with pytest.raises(ClusterReadError, match="No such file"):
        connection(None)
