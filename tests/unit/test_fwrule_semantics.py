"""FirewallRule tiers: priority, Pass, Deny over NetworkPolicy allow, Baseline
under policies, port and peer forms, and validation (fail closed)."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from firewall_operator import fwrule
from tests.unit.pw_policy import fwr, netpol, reachable, snapshot

ALLOW_X_FROM_ALL = netpol("x", "allow-all", "{podSelector: {}, ingress: [{}]}")
DENY_X = netpol("x", "deny-all", "podSelector: {}")
X_SUBJECT = "subject: {namespaces: {matchLabels: {team: x}}}"


def admin(name: str, priority: int, rules: str, tier: str = "Admin") -> dict[str, Any]:
    return fwr(name, f"{{tier: {tier}, priority: {priority}, {X_SUBJECT}, {rules}}}")


FROM_Y = "from: [{namespaces: {matchLabels: {team: y}}}]"


class Case(NamedTuple):
    objects: list[dict[str, Any]]
    checks: list[tuple[str, str, str, bool]]


CASES = {
    "admin-deny-beats-netpol-allow": Case(
        [ALLOW_X_FROM_ALL, admin("d", 10, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]")],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "admin-allow-beats-netpol-deny": Case(
        [DENY_X, admin("a", 10, f"ingress: [{{name: r, action: Allow, {FROM_Y}}}]")],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "admin-pass-defers-to-netpol": Case(
        [
            DENY_X,
            admin("p", 10, f"ingress: [{{name: r, action: Pass, {FROM_Y}}}]"),
            admin("b", 10, f"ingress: [{{name: r, action: Allow, {FROM_Y}}}]", "Baseline"),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "admin-pass-skips-later-admin-deny": Case(
        [
            admin("a1", 10, f"ingress: [{{name: r, action: Pass, {FROM_Y}}}]"),
            admin("a2", 20, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]"),
        ],
        [("y/a", "x/a", "80", True)],
    ),
    "admin-pass-without-netpol-reaches-baseline": Case(
        [
            admin("p", 10, f"ingress: [{{name: r, action: Pass, {FROM_Y}}}]"),
            admin("b", 10, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]", "Baseline"),
        ],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "baseline-deny-under-allowing-policy": Case(
        [
            ALLOW_X_FROM_ALL,
            admin("b", 10, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]", "Baseline"),
        ],
        [("y/a", "x/a", "80", True)],
    ),
    "baseline-deny-without-policy": Case(
        [admin("b", 10, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]", "Baseline")],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "baseline-allow-cannot-override-netpol-isolation": Case(
        [DENY_X, admin("b", 10, f"ingress: [{{name: r, action: Allow, {FROM_Y}}}]", "Baseline")],
        [("y/a", "x/a", "80", False)],
    ),
    "baseline-pass-ends-tier-default-allow": Case(
        [
            admin("b1", 10, f"ingress: [{{name: r, action: Pass, {FROM_Y}}}]", "Baseline"),
            admin("b2", 20, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]", "Baseline"),
        ],
        [("y/a", "x/a", "80", True)],
    ),
    "lower-priority-number-first": Case(
        [
            admin("z-allow", 10, f"ingress: [{{name: r, action: Allow, {FROM_Y}}}]"),
            admin("a-deny", 20, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]"),
        ],
        [("y/a", "x/a", "80", True)],
    ),
    "priority-ties-broken-by-name": Case(
        [
            admin("b-allow", 10, f"ingress: [{{name: r, action: Allow, {FROM_Y}}}]"),
            admin("a-deny", 10, f"ingress: [{{name: r, action: Deny, {FROM_Y}}}]"),
        ],
        [("y/a", "x/a", "80", False)],
    ),
    "rules-in-order-first-match-wins": Case(
        [
            admin(
                "r",
                10,
                "ingress: [{name: allow-80, action: Allow, from: [{namespaces: {}}],"
                " ports: [{portNumber: {protocol: TCP, port: 80}}]},"
                " {name: deny, action: Deny, from: [{namespaces: {}}]}]",
            )
        ],
        [("y/a", "x/a", "80", True), ("y/a", "x/a", "81", False)],
    ),
    "port-range-and-named-port": Case(
        [
            admin(
                "r",
                10,
                "ingress: [{name: ok, action: Allow, from: [{namespaces: {}}], ports:"
                " [{portRange: {protocol: UDP, start: 1000, end: 2000}}, {namedPort: dns}]},"
                " {name: deny, action: Deny, from: [{namespaces: {}}]}]",
            )
        ],
        [
            ("y/a", "x/a", "1500/UDP", True),
            ("y/a", "x/a", "1500/TCP", False),
            ("y/a", "x/a", "53/UDP", True),
            ("y/a", "x/a", "53/TCP", False),
        ],
    ),
    "egress-named-port-on-peer": Case(
        [
            admin(
                "r",
                10,
                "egress: [{name: ok, action: Allow, to: [{namespaces: {}}], ports:"
                " [{namedPort: http}]}, {name: deny, action: Deny, to: [{namespaces: {}}]}]",
            )
        ],
        [("x/a", "y/b", "8080", True), ("x/a", "y/b", "80", False), ("x/a", "y/a", "80", False)],
    ),
    "networks-peer-and-pods-subject": Case(
        [
            fwr(
                "n",
                "{tier: Admin, priority: 1, subject: {pods: {namespaceSelector: {},"
                " podSelector: {matchLabels: {app: b}}}}, egress: [{name: block, action: Deny,"
                " to: [{networks: [10.0.2.0/24, 'fd00::/16']}]}]}",
            )
        ],
        [("x/b", "y/a", "80", False), ("x/b", "z/c", "80", True), ("x/a", "y/a", "80", True)],
    ),
    "pods-peer-ands-selectors": Case(
        [
            admin(
                "r",
                10,
                "ingress: [{name: d, action: Deny, from: [{pods: {namespaceSelector:"
                " {matchLabels: {team: y}}, podSelector: {matchLabels: {app: b}}}}]}]",
            )
        ],
        [("y/b", "x/a", "80", False), ("y/a", "x/a", "80", True), ("x/b", "x/a", "80", True)],
    ),
    "hostnetwork-subject-never-selected": Case(
        [admin("r", 10, "ingress: [{name: d, action: Deny, from: [{namespaces: {}}]}]")],
        [("y/a", "x/h", "80", True), ("y/a", "x/a", "80", False)],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_tiers(case: Case) -> None:
    snap = snapshot(*case.objects)
    assert snap.all_problems() == []
    got = [(s, d, p, reachable(snap, s, d, p)) for s, d, p, _ in case.checks]
    assert got == case.checks


GOOD = (
    "{tier: Admin, priority: 5, subject: {namespaces: {matchLabels: {team: x}}},"
    " ingress: [{name: r, action: Deny, from: [{namespaces: {}}]}]}"
)
INVALID = {
    "priority-too-big": GOOD.replace("priority: 5", "priority: 5000"),
    "priority-not-int": GOOD.replace("priority: 5", "priority: high"),
    "bad-tier": GOOD.replace("Admin", "Middle"),
    "bad-action": GOOD.replace("Deny", "Drop"),
    "peer-two-kinds": GOOD.replace(
        "from: [{namespaces: {}}]", "from: [{namespaces: {}, networks: [10.0.0.0/8]}]"
    ),
    "bad-network": GOOD.replace("from: [{namespaces: {}}]", "from: [{networks: [10.0.0.0/33]}]"),
    "empty-from": GOOD.replace("from: [{namespaces: {}}]", "from: []"),
    "range-reversed": GOOD.replace(
        "}]}]}", "}], ports: [{portRange: {protocol: TCP, start: 9, end: 1}}]}]}"
    ),
    "port-zero": GOOD.replace("}]}]}", "}], ports: [{portNumber: {protocol: TCP, port: 0}}]}]}"),
    "duplicate-rule-names": GOOD.replace(
        "]}]}", "]}, {name: r, action: Allow, from: [{namespaces: {}}]}]}"
    ),
    "pods-missing-podselector": GOOD.replace(
        "from: [{namespaces: {}}]", "from: [{pods: {namespaceSelector: {}}}]"
    ),
}


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_invalid_rule_fails_closed(spec: str) -> None:
    snap = snapshot(fwr("broken", spec))
    problems = snap.all_problems()
    assert [(p.kind, p.name, p.severity) for p in problems] == [("FirewallRule", "broken", "error")]
    assert "failing closed" in problems[0].reason
    assert not reachable(snap, "y/a", "x/a", "80")
    assert reachable(snap, "x/a", "y/a", "80"), "only the declared direction is isolated"


NO_SUBJECT = {
    "missing": "{tier: Admin, priority: 1, ingress: []}",
    "two-subjects": GOOD.replace(
        "{namespaces: {matchLabels: {team: x}}}, ingress",
        "{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}, ingress",
    ),
}


@pytest.mark.parametrize("spec", NO_SUBJECT.values(), ids=NO_SUBJECT.keys())
def test_rule_without_usable_subject_is_reported_and_ignored(spec: str) -> None:
    snap = snapshot(fwr("nosubject", spec))
    (problem,) = snap.all_problems()
    assert "ignored" in problem.reason
    assert reachable(snap, "y/a", "x/a", "80")


def test_valid_rule_parses_fields() -> None:
    rule = fwrule.parse(fwr("ok", GOOD.replace("Deny,", "Deny, log: true,")))
    assert (rule.tier, rule.priority, rule.valid, rule.generation) == ("Admin", 5, True, 1)
    assert rule.ingress[0].log and rule.ingress[0].action == "Deny"
