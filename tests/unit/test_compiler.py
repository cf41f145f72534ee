"""The node compiler: golden restore text for fixture snapshots, layout rules,
rule counts independent of cluster size, and invalid input.

Goldens live in ``tests/unit/golden/compile-<case>.txt``.  Regenerate them
after an intended change with::

    PODWALL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_compiler.py

and review the diff.  On a mismatch the test prints the full rendered text.
"""

from __future__ import annotations

import difflib
import os
import pathlib
from typing import Any

import pytest
import yaml

from firewall_operator import cluster, compiler
from firewall_plugin import model, render, xtables
from firewall_plugin.endpoints import EndpointRecord
from tests.unit.pw_policy import FIXTURES, base_documents, netpol

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
NODE = "n1"


def records_for(snap: cluster.Snapshot, node: str = NODE) -> list[EndpointRecord]:
    """Endpoint records as the plugin would write them for the node's pods."""
    return [
        EndpointRecord.make(
            container_id=f"cid-{pod.namespace}-{pod.name}",
            ifname="eth0",
            podNamespace=pod.namespace,
            podName=pod.name,
            podUID=pod.uid,
            ips=tuple(f"{ip}/{64 if ':' in ip else 24}" for ip in pod.ips),
            hostInterface=f"veth{index}",
            bridge="cni0",
        )
        for index, pod in enumerate(snap.pods)
        if pod.node == node and not pod.host_network
    ]


def rendered(out: compiler.CompiledNode) -> str:
    parts = ["# problems", *map(str, out.problems), "# unmatched endpoints", *out.unmatched]
    for family in model.FAMILIES:
        state = out.family(family)
        parts.append(f"# {family} iptables-restore")
        chains = [
            *xtables.dispatch_chains(out.endpoints, family, state_dir="/var/lib/podwall"),
            *state.chains.values(),
        ]
        parts.append(render.render_restore(family=family, replace=chains))
        parts.append(f"# {family} ipset restore")
        parts.append(render.render_ipset_restore(replace=list(state.sets.values())))
    return "\n".join(parts).rstrip("\n") + "\n"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("PODWALL_UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    want = path.read_text() if path.exists() else ""
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True)))
        pytest.fail(
            f"{path.name} differs (PODWALL_UPDATE_GOLDEN=1 to regenerate)\n"
            f"--- full rendered output ---\n{text}\n--- diff ---\n{diff}",
            pytrace=False,
        )


def fixture_snapshot(case: str) -> cluster.Snapshot:
    extra = list(yaml.safe_load_all((FIXTURES / "compiler" / f"{case}.yaml").read_text()))
    return cluster.Snapshot.from_documents([*base_documents(), *extra])


@pytest.mark.parametrize(
    ("case", "deny_action"),
    [("netpol", "drop"), ("tiers", "reject"), ("invalid", "drop")],
    ids=["netpol", "tiers", "invalid"],
)
def test_golden(case: str, deny_action: Any) -> None:
    snap = fixture_snapshot(case)
    records = records_for(snap)
    if case == "invalid":
        records.append(
            EndpointRecord.make(
                container_id="cid-ghost",
                ifname="eth0",
                podNamespace="x",
                podName="ghost",
                ips=("10.0.1.9/24",),
            )
        )
    out = compiler.compile_node(snap, records, deny_action=deny_action)
    check_golden(f"compile-{case}", rendered(out))


def test_compile_is_deterministic() -> None:
    snap = fixture_snapshot("tiers")
    first = rendered(compiler.compile_node(snap, records_for(snap)))
    again = rendered(compiler.compile_node(snap, list(reversed(records_for(snap)))))
    assert first == again


def test_layout_never_accepts_and_names_fit() -> None:
    snap = fixture_snapshot("tiers")
    out = compiler.compile_node(snap, records_for(snap), deny_action="reject")
    for family in model.FAMILIES:
        state = out.family(family)
        dispatch = xtables.dispatch_chains(out.endpoints, family, state_dir="/var/lib/podwall")
        assert "PODWALL-FORWARD" in {chain.name for chain in dispatch}
        for chain in [*dispatch, *state.chains.values()]:
            assert chain.name.startswith("PODWALL") and len(chain.name) <= 28
            assert all(rule.target != "ACCEPT" for rule in chain.rules)
            assert all(rule.comment.startswith("podwall") for rule in chain.rules)
        for ipset in state.sets.values():
            assert ipset.name.startswith("PODWALL") and len(ipset.name) <= 28
            assert ipset.family == family


def test_ipblock_sets_split_zero_prefix_and_mark_excepts() -> None:
    snap = fixture_snapshot("netpol")
    out = compiler.compile_node(snap, records_for(snap))
    nets4 = [s.entries for s in out.family("ipv4").sets.values() if s.kind == "hash:net"]
    assert ("0.0.0.0/1", "10.0.0.0/8 nomatch", "128.0.0.0/1", "192.168.0.0/16 nomatch") in nets4
    nets6 = [s.entries for s in out.family("ipv6").sets.values() if s.kind == "hash:net"]
    assert ("8000::/1", "::/1", "fd00::2:0/112 nomatch") in nets6


def test_egress_named_port_set_holds_peer_ip_and_port() -> None:
    snap = fixture_snapshot("netpol")
    out = compiler.compile_node(snap, records_for(snap))
    named = [s.entries for s in out.family("ipv4").sets.values() if s.kind == "hash:ip,port"]
    assert ("10.0.1.1,tcp:80", "10.0.2.2,tcp:8080") in named


def test_unknown_and_stale_endpoints_get_default_deny() -> None:
    snap = fixture_snapshot("netpol")
    stale = EndpointRecord.make(
        container_id="old",
        ifname="eth0",
        podNamespace="x",
        podName="a",
        podUID="other",
        ips=("10.0.1.1/24",),
    )
    out = compiler.compile_node(snap, [stale])
    assert out.unmatched == ("old_eth0",)
    chain = out.family("ipv4").chains[stale.ingressChain]
    assert chain.rules[-1].target == "DROP"


def _scaled(pods: int) -> cluster.Snapshot:
    docs: list[Any] = []
    for number in range(pods):
        ns = f"ns{number % 10}"
        docs.append(
            {
                "kind": "Pod",
                "metadata": {
                    "namespace": ns,
                    "name": f"p{number}",
                    "labels": {"app": f"a{number % 7}"},
                },
                "spec": {
                    "nodeName": "n1" if number < 5 else "n2",
                    "containers": [{"ports": [{"name": "http", "containerPort": 80}]}],
                },
                "status": {"podIP": f"10.{number // 65536}.{number // 256 % 256}.{number % 256}"},
            }
        )
    docs += [
        netpol(
            "ns0",
            "p",
            "{podSelector: {}, ingress: [{from: [{namespaceSelector: {},"
            " podSelector: {matchLabels: {app: a1}}}], ports: [{port: http}]}],"
            " egress: [{to: [{podSelector: {}}], ports: [{port: http}]}]}",
        ),
        netpol(
            "ns0",
            "q",
            "{podSelector: {matchLabels: {app: a0}}, ingress: [{from:"
            " [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]}]}",
        ),
    ]
    return cluster.Snapshot.from_documents(docs)


def test_rules_per_pod_do_not_depend_on_cluster_size() -> None:
    counts = []
    entries = []
    for size in (1000, 10000):
        snap = _scaled(size)
        out = compiler.compile_node(snap, records_for(snap))
        state = out.family("ipv4")
        counts.append(
            sorted(
                (name, len(c.rules))
                for name, c in state.chains.items()
                if name != "PODWALL-FORWARD"
            )
        )
        entries.append(sum(len(s.entries) for s in state.sets.values()))
    assert counts[0] == counts[1]
    assert entries[1] > entries[0] * 5, "the members live in sets, which grow"
