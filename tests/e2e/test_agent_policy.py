"""The agent as a process in a node netns: policies change traffic between pods."""

from __future__ import annotations

import time

from tests.e2e.agent_env import AgentNode, deny_all, wait_until


def test_networkpolicy_apply_update_delete(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("y", "b", {"app": "b"})
    assert wait_until(lambda: node.reach(a, b), what="a→b open")
    node.kube.apply(deny_all("y"))
    wait_until(lambda: not node.reach(a, b), what="a→b blocked by deny-all")
    allow = deny_all("y")
    allow["spec"] = {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    node.kube.apply(allow)
    wait_until(lambda: node.reach(a, b), what="a→b allowed after update")
    node.kube.delete("NetworkPolicy", "deny-all", "y")
    moment = time.time()
    node.synced_after(moment)
    assert node.reach(a, b)
    assert node.reach(b, a)


def fw_rule(action: str, *, duplicate: bool = False) -> dict[str, object]:
    rule: dict[str, object] = {
        "name": "x-to-y",
        "action": action,
        "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}],
    }
    # "1:2:3/64" passes the CRD's CIDR pattern but is no IPv6 network
    bad_rule = {"name": "bad", "action": "Deny", "from": [{"networks": ["1:2:3/64"]}]}
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "guard-y"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}},
            "ingress": [rule, bad_rule] if duplicate else [rule],
        },
    }


def valid_condition(node: AgentNode, generation: int) -> dict[str, object] | None:
    found = node.kube.get("FirewallRule", "guard-y") or {}
    status = found.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Valid" and cond.get("observedGeneration") == generation:
            return cond  # type: ignore[no-any-return]
    return None


def test_firewallrule_apply_update_delete_and_status(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("y", "b", {"app": "b"})
    assert wait_until(lambda: node.reach(a, b), what="a→b open")
    created = node.kube.apply(fw_rule("Deny"))
    wait_until(lambda: not node.reach(a, b), what="Admin Deny blocks a→b")
    assert node.reach(b, a)
    gen = created["metadata"]["generation"]
    cond = wait_until(lambda: valid_condition(node, gen), what="Valid condition")
    assert cond["status"] == "True"
    wait_until(
        lambda: node.node_status().get("programmedGenerations") == {"guard-y": gen},
        what="NodeFirewall programmedGenerations",
    )
    updated = node.kube.apply(fw_rule("Allow"))
    wait_until(lambda: node.reach(a, b), what="Admin Allow opens a→b")
    wait_until(lambda: valid_condition(node, updated["metadata"]["generation"]), what="new gen")
    # invalid (a malformed IPv6 CIDR passes the CRD, not podwall): fail closed
    bad = node.kube.apply(fw_rule("Allow", duplicate=True))
    wait_until(lambda: not node.reach(a, b), what="invalid rule fails closed")
    cond = wait_until(lambda: valid_condition(node, bad["metadata"]["generation"]), what="invalid")
    assert cond["status"] == "False" and cond["reason"] == "Invalid"
    events = node.kube.call("GET", "/api/v1/namespaces/default/events")["items"]
    warnings = [e for e in events if e["involvedObject"].get("name") == "guard-y"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings
    node.kube.delete("FirewallRule", "guard-y")
    wait_until(lambda: node.reach(a, b), what="a→b open after delete")
    wait_until(lambda: node.node_status().get("programmedGenerations") == {}, what="no gens")


def test_new_pod_isolated_from_first_packet_and_relabel(node: AgentNode) -> None:
    node.start_agent()
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("y", "b", {"app": "b"})
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "secure-from-x", "namespace": "y"},
        "spec": {
            "podSelector": {"matchLabels": {"tier": "secure"}},
            "ingress": [
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}
                    ]
                }
            ],
        },
    }
    node.kube.apply(policy)
    node.synced_after(time.time())
    # the ADD returns once the agent programmed the pod's real rules: open to x, closed to y
    c = node.add_pod("y", "c", {"tier": "secure"})
    assert not node.reach(b, c)
    assert node.reach(a, c)
    # relabel b into the policy: isolated at once
    assert node.reach(c, b)
    node.kube.apply(
        {
            **_pod_obj(node, "y", "b"),
            "metadata": {"name": "b", "namespace": "y", "labels": {"tier": "secure"}},
        }
    )
    wait_until(lambda: not node.reach(c, b), timeout=3, what="relabelled b isolated")
    assert node.reach(a, b)


def _pod_obj(node: AgentNode, namespace: str, name: str) -> dict[str, object]:
    found = node.kube.get("Pod", name, namespace)
    return {k: found[k] for k in ("apiVersion", "kind", "spec")}
