"""A pod peer's set whose members changed is patched from its previous build
(the entries of the pods that left out, of those that joined in), and the
patched set is exactly what a from-scratch compile makes, also when another
member holds the same address."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from firewall_operator import cluster, compiler, kernel_sets
from firewall_plugin.endpoints import EndpointRecord


def pod(index: int, app: str, ip: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"namespace": "ns", "name": f"p{index}", "uid": f"u{index}",
                     "labels": {"app": app}},
        "spec": {"nodeName": "n1" if index == 0 else "n2",
                 "containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]},
    }  # fmt: skip


POLICY = {
    "kind": "NetworkPolicy",
    "metadata": {"namespace": "ns", "name": "np"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
             "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                         "ports": [{"port": "http"}]}]},
}  # fmt: skip


def snapshot(pods: list[dict[str, Any]]) -> cluster.Snapshot:
    return cluster.Snapshot.from_documents([*pods, POLICY])


RECORD = EndpointRecord.make(container_id="c0", ifname="eth0", podNamespace="ns",
                             podName="p0", podUID="u0", ips=("10.0.0.10/24",))  # fmt: skip


def relabelled(snap: cluster.Snapshot, name: str, app: str) -> cluster.Snapshot:
    pods = [dataclasses.replace(p, labels={"app": app}) if p.name == name else p for p in snap.pods]
    return dataclasses.replace(snap, pods=tuple(pods))


def sets(node: compiler.CompiledNode) -> dict[str, tuple[str, ...]]:
    return {s.kind: s.entries for s in node.families["ipv4"].sets.values()}


@pytest.mark.parametrize("shared", [False, True], ids=["own address", "shared address"])
def test_a_pod_leaving_and_coming_back_patches_the_sets(
    shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ips = [f"10.0.0.{10 + n}" for n in range(6)]
    if shared:
        ips[4] = ips[3]  # p3 and p4 hold one address
    first = snapshot([pod(n, "a", ip) for n, ip in enumerate(ips)])
    incremental = compiler.Compiler()
    before = sets(incremental.compile(first, [RECORD]))
    assert "10.0.0.13" in before["hash:ip"] and "10.0.0.13,tcp:8080" in before["hash:ip,port"]
    rebuilt: list[str] = []  # the kinds of the sets the incremental compiler rebuilt
    make = kernel_sets.SetContents._make

    def counted(contents: kernel_sets.SetContents, *args: Any) -> Any:
        if contents in incremental._contents.values():
            rebuilt.append(args[1].kind)
        return make(contents, *args)

    monkeypatch.setattr(kernel_sets.SetContents, "_make", counted)
    for step in (relabelled(first, "p3", "b"), first):
        got = incremental.compile(step, [RECORD])
        assert got == compiler.compile_node(step, [RECORD])
    assert sets(got) == before
    left = sets(compiler.compile_node(relabelled(first, "p3", "b"), [RECORD]))
    assert ("10.0.0.13" in left["hash:ip"]) is shared  # p4 still holds it
    # an address another member holds: rebuilt; else patched
    assert rebuilt == (["hash:ip", "hash:ip,port"] * 2 if shared else [])
