"""Agent restarts, pods deleted while it is down, 410 re-lists, kubectl columns, RBAC record."""

from __future__ import annotations

import collections
import time
from typing import Any

from tests.e2e.agent_env import NODEFIREWALL_COLUMNS, PODWALL, AgentNode, deny_all, wait_until
from tests.e2e.conftest import ApiServerHandle


def allow_from_x(namespace: str) -> dict[str, Any]:
    policy = deny_all(namespace, "from-x")
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "x"}}
    policy["spec"] = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": selector}]}]}
    return policy


def ipsets(node: AgentNode) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = ""
    for line in node.run("ipset", "save").splitlines():
        parts = line.split()
        if parts[0] == "create":
            current = parts[1]
            found[current] = []
        elif parts[0] == "add":
            found[parts[1]].append(parts[2])
    return {k: sorted(v) for k, v in found.items() if "PODWALL" in k.upper()}


def test_restart_converges_without_duplicates_and_cleans_deleted_pod(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    c = node.add_pod("z", "c")
    node.kube.apply(allow_from_x("y"))
    wait_until(lambda: not node.reach(c, b) and node.reach(a, b), what="only x may reach y")
    before = node.podwall_rules()
    assert node.stop_agent() == 0
    assert node.podwall_rules() == before, "stopping the agent changed the kernel"
    assert not node.reach(c, b), "pods must stay protected while the agent is down"
    # while it is down: a peer pod goes away (CNI DEL + API), the policy changes
    node.delete_pod(a)
    node.kube.apply(deny_all("y"))
    node.kube.delete("NetworkPolicy", "from-x", "y")
    x2 = node.add_pod("x", "a2")  # no agent: the plugin's default applies
    node.start_agent()
    wait_until(lambda: not node.reach(x2, b) and node.reach(b, x2), what="converged")
    rules = node.podwall_rules()
    duplicates = [line for line, n in collections.Counter(rules).items() if n > 1]
    assert not duplicates, duplicates
    assert not any(a.attachment.container_id in line for line in rules)
    assert all(a.ip not in entries for entries in ipsets(node).values())
    node.stop_agent()
    node.start_agent()
    node.synced_after(time.time() - 1)
    assert node.podwall_rules() == rules, "a second restart changed the rules"


def test_objects_deleted_across_410_relist_are_swept(
    node: AgentNode, apiserver: ApiServerHandle
) -> None:
    node.start_agent()
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    node.kube.apply(deny_all("y"))
    wait_until(lambda: not node.reach(a, b), what="deny-all in y")
    store = apiserver.server.store

    def vanish() -> None:  # gone without a DELETED event, as seen across a watch gap
        store.objects["networking.k8s.io/networkpolicies"].pop(("y", "deny-all"))
        store.next_rv()

    apiserver.server.call(vanish)
    time.sleep(1)
    assert not node.reach(a, b), "no event: the agent cannot know yet"
    apiserver.server.expire_watches()
    wait_until(lambda: node.reach(a, b), timeout=20, what="policy swept after the 410 re-list")
    assert "swept 1 networkpolicies" in node.agent_log()
    watch = node.node_status()["watch"]
    assert watch["state"] == "Current", watch
    # every watch got the 410: one LIST at start-up, one after it, per kind
    assert set(watch["listings"].values()) == {2}, watch


def test_kubectl_shows_columns(node: AgentNode, kubectl: Any) -> None:
    node.start_agent()
    node.add_pod("x", "a")
    rule = {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "base"},
        "spec": {
            "tier": "Baseline",
            "priority": 7,
            "subject": {"namespaces": {}},
            "ingress": [{"name": "deny", "action": "Deny", "from": [{"namespaces": {}}]}],
        },
    }
    node.kube.apply(rule)
    wait_until(lambda: "True" in kubectl("get", "firewallrules"), what="Valid column")
    table = kubectl("get", "firewallrules").splitlines()
    assert table[0].split() == ["NAME", "TIER", "PRIORITY", "INGRESS", "EGRESS", "VALID", "AGE"]
    assert table[1].split()[:6] == ["base", "Baseline", "7", "1", "0", "True"]
    wait_until(lambda: node.node_status().get("endpoints") == 1, what="NodeFirewall")
    table = kubectl("get", "nodefirewalls").splitlines()
    assert table[0].split() == NODEFIREWALL_COLUMNS
    row = table[1].split()
    assert row[:3] == [node.node, "iptables-nft", "1"] and int(row[3]) > 0
    assert row[7] == "Current", row
    node.kube.delete("FirewallRule", "base")


def test_cleanup_removes_every_podwall_chain_and_set(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a")
    b = node.add_pod("y", "b")
    node.kube.apply(allow_from_x("y"))
    wait_until(lambda: any("PODWALL-S" in line for line in node.podwall_rules()), what="sets")
    assert node.stop_agent() == 0
    assert node.podwall_rules() and ipsets(node)
    # leftovers of other data planes (an earlier backend), and others' state
    node.run("nft", "add table inet podwall; add table bridge podwall; add table inet other")
    node.run("iptables-legacy", "-N", "PODWALL-FORWARD")
    node.run("iptables-legacy", "-A", "FORWARD", "-j", "PODWALL-FORWARD")
    node.run("iptables-legacy", "-N", "KEEP-ME")
    out = node.run(PODWALL, "agent", "--cleanup", "--cni-conf-dir", node.dir("conf"))
    assert "removed every podwall table, chain and set" in out
    assert "(nftables, iptables-nft, iptables-legacy, ipset)" in out
    assert node.podwall_rules() == [] and ipsets(node) == {}
    tables = node.run("nft", "list tables")
    assert "podwall" not in tables and "inet other" in tables
    legacy = node.run("iptables-legacy-save", "-t", "filter")
    assert "PODWALL" not in legacy.upper() and ":KEEP-ME" in legacy
    assert node.reach(a, b)  # nothing of podwall left in the path
    again = node.run(PODWALL, "agent", "--cleanup", "--cni-conf-dir", node.dir("conf"))
    assert "(none was left)" in again
    node.kube.delete("NetworkPolicy", "from-x", "y")
