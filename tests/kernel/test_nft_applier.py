"""``NftApplier`` writes what changed, and what it remembers never goes stale.

Three pods of one namespace, a NetworkPolicy admitting pods labelled
``role: fe``: its peer set holds their addresses.  Relabelling a pod keeps
the set's name and changes its members; each apply must leave exactly the
compiled members in the kernel, an unchanged state must write nothing, and
going back to an earlier state (the same objects again) must write it back.
Also: a full apply repairs a flushed chain and set (``verify`` names them),
a policy's set goes with the policy, a stale endpoint fingerprint is refused
and ``cleanup`` leaves no table.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firewall_lab import netns
from firewall_operator import cluster, compiler
from firewall_operator.applier import StaleEndpointsError, endpoints_fingerprint
from firewall_operator.nft_applier import NftApplier
from firewall_plugin import endpoints
from firewall_plugin.nft import kernel, layout, translate
from firewall_plugin.nft import netlink as nl

PODS = {"a": "10.70.0.2", "b": "10.70.0.3", "c": "10.70.0.4"}


def documents(fe: set[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"kind": "Namespace", "metadata": {"name": "x", "labels": {}}}]
    for name, ip in PODS.items():
        meta = {"namespace": "x", "name": name, "uid": f"u-{name}",
                "labels": {"role": "fe" if name in fe else "be"}}  # fmt: skip
        docs.append({"kind": "Pod", "metadata": meta, "spec": {"nodeName": "n"},
                     "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})  # fmt: skip
    docs.append({
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "x", "name": "from-fe"},
        "spec": {"podSelector": {}, "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"role": "fe"}}}]}]},
    })  # fmt: skip
    return docs


def records() -> list[endpoints.EndpointRecord]:
    return [
        endpoints.EndpointRecord.make(
            container_id=f"c-{name}",
            ifname="eth0",
            podNamespace="x",
            podName=name,
            podUID=f"u-{name}",
            ips=(f"{ip}/24",),
            hostInterface=f"veth{name}",
        )
        for name, ip in PODS.items()
    ]


def peer_sets(compiled: compiler.CompiledNode) -> Mapping[str, frozenset[bytes]]:
    return {
        name: translate.element_keys(translate.peer_set(ipset)[1])
        for state in compiled.families.values()
        for name, ipset in state.sets.items()
    }


def run(workdir: str) -> list[tuple[int, dict[str, frozenset[bytes]], dict[str, frozenset[bytes]]]]:
    """Inside the node: apply each state; (transactions, kernel sets, wanted sets)."""
    comp = compiler.Compiler()
    states = [comp.compile(cluster.Snapshot.from_documents(documents(fe)), records())
              for fe in ({"a"}, {"a", "b"}, {"a", "b"})]  # fmt: skip
    states.append(states[0])  # back to the first, the same objects
    writer = NftApplier(run_dir=f"{workdir}/run", state_dir=f"{workdir}/state")
    out = []
    for state in states:
        stats = writer.apply(state.families, endpoints=state.endpoints)
        wanted = dict(peer_sets(state))
        with nl.Netlink() as sock:
            have = {name: translate.element_keys(kernel.elements(sock, layout.INET, name))
                    for name in wanted}  # fmt: skip
        out.append((stats.transactions, have, wanted))
    return out


def test_sets_follow_each_state_and_an_unchanged_state_writes_nothing(
    node_ns: str, tmp_path: Path
) -> None:
    for record in records():
        endpoints.write(str(tmp_path / "state"), record)
    results = netns.call(node_ns, run, str(tmp_path))
    for index, (_, have, wanted) in enumerate(results):
        assert wanted and have == wanted, f"state {index}: kernel {have} != compiled {wanted}"
    assert [transactions for transactions, _, _ in results] == [1, 1, 0, 1]
    assert results[0][2] != results[1][2], "relabelling b must change the peer set"


def compiled(fe: set[str], *, policy: bool = True) -> compiler.CompiledNode:
    docs = documents(fe) if policy else documents(fe)[:-1]
    return compiler.compile_node(cluster.Snapshot.from_documents(docs), records())


def table_text() -> str:
    found = []
    for family in ("inet", "bridge"):
        done = subprocess.run(["nft", "list", "table", family, "podwall"], capture_output=True,
                              text=True, check=False)  # fmt: skip
        found.append(done.stdout)
    return "\n".join(found)


def lifecycle(workdir: str) -> dict[str, Any]:
    """Inside the node: drift repaired by a full apply, stale state removed,
    a stale fingerprint refused, cleanup."""
    writer = NftApplier(run_dir=f"{workdir}/run", state_dir=f"{workdir}/state")
    with_policy = compiled({"a"})
    writer.apply(with_policy.families, endpoints=with_policy.endpoints)
    out: dict[str, Any] = {"sets": sorted(peer_sets(with_policy))}
    chain = sorted(name for name in with_policy.families["ipv4"].chains)[0]
    subprocess.run(["nft", "flush", "chain", "inet", "podwall", f"{chain}-4"], check=True)
    subprocess.run(["nft", "flush", "set", "inet", "podwall", out["sets"][0]], check=True)
    out["drift"] = writer.verify()
    writer.apply(with_policy.families, endpoints=with_policy.endpoints, full=True)
    out["after_repair"] = writer.verify()
    without = compiled({"a"}, policy=False)
    writer.apply(without.families, endpoints=without.endpoints)
    out["text_without_policy"] = table_text()
    try:
        writer.apply(without.families, endpoints=without.endpoints,
                     expect_endpoints=endpoints_fingerprint(f"{workdir}/other"))  # fmt: skip
        out["stale"] = "accepted"
    except StaleEndpointsError:
        out["stale"] = "refused"
    writer.cleanup()
    out["after_cleanup"] = table_text()
    return out


def test_drift_repaired_stale_state_removed_stale_records_refused_cleanup(
    node_ns: str, tmp_path: Path
) -> None:
    for record in records():
        endpoints.write(str(tmp_path / "state"), record)
    found = netns.call(node_ns, lifecycle, str(tmp_path))
    assert len(found["drift"]) >= 2, found["drift"]  # the chain and the set
    assert found["after_repair"] == []
    assert "table inet podwall" in found["text_without_policy"]
    assert not any(name in found["text_without_policy"] for name in found["sets"])
    assert found["stale"] == "refused"
    assert found["after_cleanup"].strip() == ""


def outgrow(workdir: str) -> list[tuple[int, int, int, str, bool]]:
    """Inside the node, with hash sets sized for at least 1 element (twice
    what they hold when created): the peer set holds 1, 2, then 3 pods.
    Per apply: (transactions, retries, chains written, the set's kernel
    declaration, kernel elements == compiled)."""
    from firewall_operator import nft_applier

    nft_applier.SET_ROOM = 1
    comp = compiler.Compiler()
    writer = NftApplier(run_dir=f"{workdir}/run", state_dir=f"{workdir}/state")
    out = []
    for fe in ({"a"}, {"a", "b"}, {"a", "b", "c"}):
        state = comp.compile(cluster.Snapshot.from_documents(documents(fe)), records())
        stats = writer.apply(state.families, endpoints=state.endpoints)
        (name, wanted), *_ = peer_sets(state).items()
        with nl.Netlink() as sock:
            have = translate.element_keys(kernel.elements(sock, layout.INET, name))
        listed = subprocess.run(["nft", "list", "set", "inet", "podwall", name],
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        size = next(line.strip() for line in listed.splitlines() if "size" in line)
        out.append((stats.transactions, stats.retries, stats.chains_written, size, have == wanted))
    return out


def test_a_hash_set_that_outgrows_its_kernel_size_is_rebuilt_bigger(
    node_ns: str, tmp_path: Path
) -> None:
    for record in records():
        endpoints.write(str(tmp_path / "state"), record)
    first, second, third = netns.call(node_ns, outgrow, str(tmp_path))
    assert first[3] == second[3] == "size 2"  # created for 1 element, room for 2
    assert second[:3] == (1, 0, 0)  # 2 fit: the elements alone
    assert third[3] == "size 6"  # 3 do not: a rebuild (every chain), sized for them
    assert third[0:2] == (1, 0) and third[2] == first[2] > 0
    assert first[4] and second[4] and third[4]
