"""ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy: the
same tiers as FirewallRule, and where the kinds differ (Accept vs Allow,
BANP's single ``default`` object, CNP Baseline priority), precedence between
kinds, ``nodes`` peers, and failing closed on what podwall cannot enforce."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import yaml

from firewall_operator import evaluate, explain, upstream
from tests.unit.pw_policy import fwr, netpol, reachable, snapshot

X = "{namespaces: {matchLabels: {team: x}}}"
FROM_Y = "from: [{namespaces: {matchLabels: {team: y}}}]"
DENY_X = netpol("x", "deny-all", "podSelector: {}")
ALLOW_X = netpol("x", "allow-all", "{podSelector: {}, ingress: [{}]}")
NODES = [
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"role": "worker"}},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "192.168.0.1"},
                {"type": "Hostname", "address": "n1"},
            ]
        },
    },
    {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n2", "labels": {"role": "control"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.2"}]},
    },
]


def obj(kind: str, name: str, spec: str) -> dict[str, Any]:
    version = upstream.KINDS[kind].api_version
    meta = {"name": name, "generation": 1}
    return {"apiVersion": version, "kind": kind, "metadata": meta, "spec": yaml.safe_load(spec)}


def cnp(name: str, tier: str, priority: int, rules: str, subject: str = X) -> dict[str, Any]:
    spec = f"{{tier: {tier}, priority: {priority}, subject: {subject}, {rules}}}"
    return obj("ClusterNetworkPolicy", name, spec)


def anp(name: str, priority: int, rules: str) -> dict[str, Any]:
    return obj("AdminNetworkPolicy", name, f"{{priority: {priority}, subject: {X}, {rules}}}")


def banp(rules: str, name: str = "default", subject: str = X) -> dict[str, Any]:
    return obj("BaselineAdminNetworkPolicy", name, f"{{subject: {subject}, {rules}}}")


def ingress(action: str, peers: str = FROM_Y, extra: str = "") -> str:
    return f"ingress: [{{name: r, action: {action}, {peers}{extra}}}]"


class Case(NamedTuple):
    objects: list[dict[str, Any]]
    checks: list[tuple[str, str, str, bool]]


CASES = {
    # ClusterNetworkPolicy v1alpha2
    "cnp-accept-is-allow-over-netpol-deny": Case(
        [DENY_X, cnp("a", "Admin", 10, ingress("Accept"))],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "cnp-admin-deny-beats-netpol-allow": Case(
        [ALLOW_X, cnp("d", "Admin", 10, ingress("Deny"))],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "cnp-admin-pass-defers-to-netpol": Case(
        [
            DENY_X,
            cnp("p", "Admin", 10, ingress("Pass")),
            cnp("b", "Baseline", 0, ingress("Accept")),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "cnp-admin-pass-without-netpol-reaches-baseline": Case(
        [cnp("p", "Admin", 10, ingress("Pass")), cnp("b", "Baseline", 5, ingress("Deny"))],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "cnp-baseline-priority-orders-baseline-policies": Case(
        [
            cnp("z-allow", "Baseline", 10, ingress("Accept")),
            cnp("a-deny", "Baseline", 20, ingress("Deny")),
        ],
        [("y/a", "x/a", "80", True)],
    ),
    "cnp-baseline-pass-skips-rest-of-baseline": Case(
        [cnp("b1", "Baseline", 10, ingress("Pass")), cnp("b2", "Baseline", 20, ingress("Deny"))],
        [("y/a", "x/a", "80", True)],
    ),
    "cnp-baseline-cannot-override-netpol": Case(
        [DENY_X, cnp("b", "Baseline", 0, ingress("Accept"))],
        [("y/a", "x/a", "80", False)],
    ),
    "cnp-protocols-number-range-named-and-all-ports": Case(
        [
            cnp(
                "p",
                "Admin",
                1,
                "ingress: [{action: Accept, from: [{namespaces: {}}], protocols: ["
                "{tcp: {destinationPort: {number: 80}}},"
                " {udp: {destinationPort: {range: {start: 1000, end: 2000}}}},"
                " {destinationNamedPort: assoc}, {sctp: {}}]},"
                " {action: Deny, from: [{namespaces: {}}]}]",
            )
        ],
        [
            ("y/a", "x/a", "80", True),
            ("y/a", "x/a", "81", False),
            ("y/a", "x/a", "1500/UDP", True),
            ("y/a", "x/a", "53/UDP", False),
            ("y/a", "x/a", "9000/SCTP", True),
            ("y/a", "x/a", "7/SCTP", True),
        ],
    ),
    "cnp-pods-peer-namespace-selector-optional": Case(
        [
            cnp(
                "d",
                "Admin",
                1,
                ingress("Deny", "from: [{pods: {podSelector: {matchLabels: {app: b}}}}]"),
            )
        ],
        [("y/b", "x/a", "80", False), ("y/a", "x/a", "80", True)],
    ),
    "cnp-egress-networks-peer": Case(
        [
            cnp(
                "n",
                "Admin",
                1,
                "egress: [{action: Deny, to: [{networks: [10.0.2.0/24]}]}]",
            )
        ],
        [("x/a", "y/a", "80", False), ("x/a", "z/c", "80", True)],
    ),
    # nodes peers: the selected Nodes' status.addresses (x/h is hostNetwork on n1)
    "cnp-egress-nodes-peer-denies-node-ips": Case(
        [
            *NODES,
            cnp(
                "n",
                "Admin",
                1,
                "egress: [{action: Deny, to: [{nodes: {matchLabels: {role: worker}}}]}]",
                subject="{namespaces: {}}",
            ),
        ],
        [("y/a", "x/h", "80", False), ("y/a", "x/a", "80", True)],
    ),
    "cnp-egress-nodes-peer-selecting-no-node-matches-nothing": Case(
        [
            *NODES,
            cnp(
                "n",
                "Admin",
                1,
                "egress: [{action: Deny, to: [{nodes: {matchLabels: {role: gpu}}}]}]",
                subject="{namespaces: {}}",
            ),
        ],
        [("y/a", "x/h", "80", True), ("y/a", "x/a", "80", True)],
    ),
    "firewallrule-egress-nodes-peer": Case(
        [
            *NODES,
            fwr(
                "n",
                "{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{name: r,"
                " action: Deny, to: [{nodes: {matchExpressions:"
                " [{key: role, operator: Exists}]}}]}]}",
            ),
        ],
        # the pod's own node too: its traffic to the node passes its egress policy
        [("y/a", "x/h", "80", False), ("x/a", "x/h", "80", False), ("y/a", "x/a", "80", True)],
    ),
    # AdminNetworkPolicy v1alpha1
    "anp-allow-over-netpol-deny": Case(
        [DENY_X, anp("a", 10, ingress("Allow"))],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "anp-priority-order": Case(
        [anp("z-allow", 10, ingress("Allow")), anp("a-deny", 20, ingress("Deny"))],
        [("y/a", "x/a", "80", True)],
    ),
    "anp-ports-in-firewallrule-form": Case(
        [
            anp(
                "p",
                1,
                "ingress: [{name: ok, action: Allow, from: [{namespaces: {}}], ports:"
                " [{portNumber: {protocol: TCP, port: 80}}, {namedPort: dns}]},"
                " {name: no, action: Deny, from: [{namespaces: {}}]}]",
            )
        ],
        [("y/a", "x/a", "80", True), ("y/a", "x/a", "53/UDP", True), ("y/a", "x/a", "81", False)],
    ),
    "anp-egress-nodes-peer": Case(
        [
            *NODES,
            obj(
                "AdminNetworkPolicy",
                "n",
                "{priority: 1, subject: {namespaces: {}}, egress: [{action: Deny,"
                " to: [{nodes: {}}]}]}",
            ),
        ],
        [("y/a", "x/h", "80", False)],
    ),
    # BaselineAdminNetworkPolicy v1alpha1: one object, named default, after every Baseline policy
    "banp-deny-without-netpol": Case(
        [banp(ingress("Deny"))],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "banp-cannot-override-netpol": Case(
        [ALLOW_X, banp(ingress("Deny"))],
        [("y/a", "x/a", "80", True)],
    ),
    "banp-runs-after-baseline-cnp-at-priority-1000": Case(
        [banp(ingress("Deny")), cnp("last", "Baseline", 1000, ingress("Accept"))],
        [("y/a", "x/a", "80", True)],
    ),
    "banp-runs-after-baseline-firewallrule": Case(
        [
            banp(ingress("Allow")),
            fwr("f", f"{{tier: Baseline, priority: 1000, subject: {X}, {ingress('Deny')}}}"),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "banp-named-otherwise-is-ignored": Case(
        [banp(ingress("Deny"), name="strict")],
        [("y/a", "x/a", "80", True)],
    ),
    # precedence between kinds at the same tier and priority
    "firewallrule-before-cnp-at-same-priority": Case(
        [
            cnp("a", "Admin", 10, ingress("Accept")),
            fwr("z", f"{{tier: Admin, priority: 10, subject: {X}, {ingress('Deny')}}}"),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "cnp-before-anp-at-same-priority": Case(
        [anp("a", 10, ingress("Deny")), cnp("z", "Admin", 10, ingress("Accept"))],
        [("y/a", "x/a", "80", True)],
    ),
    "lower-priority-wins-across-kinds": Case(
        [
            anp("a", 5, ingress("Deny")),
            fwr("f", f"{{tier: Admin, priority: 6, subject: {X}, {ingress('Allow')}}}"),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "same-kind-ties-by-name": Case(
        [
            cnp("b-accept", "Admin", 10, ingress("Accept")),
            cnp("a-deny", "Admin", 10, ingress("Deny")),
        ],
        [("y/a", "x/a", "80", False)],
    ),
}


def _checks(snap: Any, case: Case) -> list[tuple[str, str, str, bool]]:
    return [(s, d, p, reachable(snap, s, d, p)) for s, d, p, _ in case.checks]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tiers(case: Case) -> None:
    snap = snapshot(*case.objects)
    errors = [p for p in snap.all_problems() if p.severity == "error"]
    if any(o.get("metadata", {}).get("name") == "strict" for o in case.objects):
        assert [(p.kind, p.name) for p in errors] == [("BaselineAdminNetworkPolicy", "strict")]
    else:
        assert errors == []
    assert _checks(snap, case) == case.checks


FAIL_CLOSED = {
    "domainnames-accept-matches-nothing": Case(
        [
            cnp(
                "f",
                "Admin",
                1,
                "egress: [{name: dns-ok, action: Accept, to: [{domainNames: [example.com]},"
                " {namespaces: {}}]}, {name: rest, action: Deny,"
                " to: [{namespaces: {matchLabels: {team: y}}}]}]",
            )
        ],
        [("x/a", "y/a", "80", False), ("x/a", "z/c", "80", True)],
    ),
    "unknown-peer-in-deny-denies-all": Case(
        [cnp("f", "Admin", 1, "egress: [{name: d, action: Deny, to: [{serviceAccounts: {}}]}]")],
        [("x/a", "y/a", "80", False), ("x/a", "z/c", "81", False), ("y/a", "x/a", "80", True)],
    ),
    "unknown-peer-in-pass-denies-all": Case(
        [
            cnp("f", "Admin", 1, "egress: [{name: p, action: Pass, to: [{}]}]"),
            netpol("x", "allow-out", "{podSelector: {}, policyTypes: [Egress], egress: [{}]}"),
        ],
        [("x/a", "y/a", "80", False)],
    ),
    "ingress-networks-peer-is-unknown-for-ingress": Case(
        [cnp("f", "Admin", 1, ingress("Accept", "from: [{networks: [10.0.0.0/8]}]")), DENY_X],
        [("y/a", "x/a", "80", False)],
    ),
    "unknown-protocol-in-deny-denies-all": Case(
        [cnp("f", "Admin", 1, ingress("Deny", extra=", protocols: [{icmp: {}}]"))],
        [("z/c", "x/a", "80", False)],
    ),
    "anp-unknown-peer-allow-matches-nothing": Case(
        [DENY_X, anp("f", 1, ingress("Allow", "from: [{}]"))],
        [("y/a", "x/a", "80", False)],
    ),
}


@pytest.mark.parametrize("case", FAIL_CLOSED.values(), ids=FAIL_CLOSED.keys())
def test_unenforceable_rules_fail_closed_as_upstream_prescribes(case: Case) -> None:
    snap = snapshot(*case.objects)
    problems = [p for p in snap.all_problems() if p.name == "f"]
    assert [p.severity for p in problems] == ["warning"], problems
    assert "fail closed" in problems[0].reason
    assert _checks(snap, case) == case.checks


def test_fail_closed_reason_names_the_rule_and_the_field() -> None:
    (rule,) = snapshot(
        cnp("f", "Admin", 1, "egress: [{name: ext, action: Accept, to: [{domainNames: [a.io]}]}]")
    ).cluster_policies
    (problem,) = rule.problems
    assert problem.reason == (
        "spec.egress[0].to[0]: domainNames peers are not supported by podwall: "
        "the Accept rule 'ext' matches nothing (fail closed)"
    )
    assert rule.valid and rule.egress == ()


GOOD = f"{{tier: Admin, priority: 5, subject: {X}, {ingress('Deny')}}}"
INVALID = {
    "cnp-allow-is-not-a-cnp-action": ("ClusterNetworkPolicy", GOOD.replace("Deny", "Allow")),
    "cnp-tier-missing": ("ClusterNetworkPolicy", GOOD.replace("tier: Admin, ", "")),
    "cnp-priority-too-big": ("ClusterNetworkPolicy", GOOD.replace("priority: 5", "priority: 1001")),
    "cnp-range-start-not-below-end": (
        "ClusterNetworkPolicy",
        GOOD.replace(
            "}]}", "}], protocols: [{tcp: {destinationPort: {range: {start: 9, end: 9}}}}]}"
        ),
    ),
    "cnp-two-peer-fields": (
        "ClusterNetworkPolicy",
        GOOD.replace("from: [{namespaces:", "from: [{pods: {podSelector: {}}, namespaces:"),
    ),
    "cnp-too-many-rules": (
        "ClusterNetworkPolicy",
        GOOD.replace(
            ingress("Deny"),
            "ingress: [" + ", ".join([f"{{action: Deny, {FROM_Y}}}"] * 26) + "]",
        ),
    ),
    "anp-accept-is-not-an-anp-action": ("AdminNetworkPolicy", GOOD.replace("Deny", "Accept")),
    "anp-pods-needs-namespace-selector": (
        "AdminNetworkPolicy",
        GOOD.replace(
            "from: [{namespaces: {matchLabels: {team: y}}}]", "from: [{pods: {podSelector: {}}}]"
        ),
    ),
    "banp-has-no-pass": ("BaselineAdminNetworkPolicy", GOOD.replace("Deny", "Pass")),
}


@pytest.mark.parametrize(("kind", "spec"), INVALID.values(), ids=INVALID.keys())
def test_invalid_objects_fail_closed_like_firewallrule(kind: str, spec: str) -> None:
    name = "default" if kind == "BaselineAdminNetworkPolicy" else "broken"
    snap = snapshot(obj(kind, name, spec))
    problems = snap.all_problems()
    assert [(p.kind, p.name, p.severity) for p in problems] == [(kind, name, "error")]
    assert "failing closed" in problems[0].reason
    assert not reachable(snap, "y/a", "x/a", "80")
    assert reachable(snap, "x/a", "y/a", "80"), "only the declared direction is isolated"


def test_explain_names_the_kind_and_rule() -> None:
    snap = snapshot(cnp("guard", "Admin", 3, "ingress: [{action: Deny, from: [{namespaces: {}}]}]"))
    pods = {pod.key: pod for pod in snap.pods}
    verdict = evaluate.Evaluator(snap).verdict(pods["y/a"], pods["x/a"], 80, "TCP")
    assert explain.sentence(verdict.ingress) == (
        "denied: ClusterNetworkPolicy guard denies y/a (rule #0, Admin tier)"
    )


def test_kinds_parse_into_one_model() -> None:
    snap = snapshot(
        cnp("c", "Baseline", 7, ingress("Accept")),
        anp("a", 3, ingress("Pass")),
        banp(ingress("Allow")),
    )
    found = {(r.kind, r.name): (r.tier, r.priority, r.ingress[0].action) for r in snap.tiered}
    assert found == {
        ("ClusterNetworkPolicy", "c"): ("Baseline", 7, "Allow"),
        ("AdminNetworkPolicy", "a"): ("Admin", 3, "Pass"),
        ("BaselineAdminNetworkPolicy", "default"): ("Baseline", upstream.BANP_PRIORITY, "Allow"),
    }


def test_same_name_in_different_kinds_are_different_objects() -> None:
    snap = snapshot(cnp("default", "Baseline", 1, ingress("Deny")), banp(ingress("Allow")))
    assert sorted(r.key for r in snap.tiered) == [
        "BaselineAdminNetworkPolicy/default",
        "ClusterNetworkPolicy/default",
    ]
