"""NetworkPolicy semantics, one table row per trap (docs/facts.md, Kubernetes docs).

Each row: policies added to the basic fixture cluster, then a list of
(from, to, port[/protocol], expected) checks against ``evaluate``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from tests.unit.pw_policy import netpol, reachable, snapshot

DENY_X = netpol("x", "deny-all", "podSelector: {}")


class Case(NamedTuple):
    policies: list[dict[str, Any]]
    checks: list[tuple[str, str, str, bool]]
    family: str = "ipv4"


CASES = {
    "no-policy-allows-all": Case([], [("x/b", "x/a", "80", True), ("y/a", "z/c", "1/UDP", True)]),
    "empty-podselector-selects-whole-namespace": Case(
        [DENY_X], [("x/b", "x/a", "80", False), ("y/a", "x/b", "80", False)]
    ),
    "ingress-only-policy-leaves-egress-open": Case([DENY_X], [("x/a", "y/a", "80", True)]),
    "other-namespaces-unaffected": Case([DENY_X], [("x/a", "y/b", "80", True)]),
    "policytypes-default-adds-egress-when-egress-rules": Case(
        [netpol("x", "p", "{podSelector: {matchLabels: {app: a}}, egress: [{}]}")],
        [("x/b", "x/a", "80", False), ("x/a", "y/a", "80", True)],
    ),
    "policytypes-egress-only-leaves-ingress-open": Case(
        [netpol("x", "p", "{podSelector: {}, policyTypes: [Egress]}")],
        [("x/a", "y/a", "80", False), ("y/a", "x/a", "80", True)],
    ),
    "empty-ingress-list-allows-nothing": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [], policyTypes: [Ingress]}")],
        [("y/a", "x/a", "80", False)],
    ),
    "empty-rule-allows-everything": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{}]}")],
        [("z/c", "x/a", "80", True), ("y/a", "x/b", "7/UDP", True)],
    ),
    "empty-from-list-allows-everything": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{from: [], ports: []}]}")],
        [("z/c", "x/a", "80", True)],
    ),
    "podselector-peer-is-own-namespace": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}",
            )
        ],
        [("x/b", "x/a", "80", True), ("y/b", "x/a", "80", False)],
    ),
    "empty-namespaceselector-is-all-namespaces": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}")],
        [("y/b", "x/a", "80", True), ("z/c", "x/a", "80", True)],
    ),
    "nsselector-and-podselector-in-one-peer-are-anded": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}},"
                " podSelector: {matchLabels: {app: b}}}]}]}",
            )
        ],
        [("y/b", "x/a", "80", True), ("y/a", "x/a", "80", False), ("x/b", "x/a", "80", False)],
    ),
    "separate-peers-are-ored": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}},"
                " {podSelector: {matchLabels: {app: b}}}]}]}",
            )
        ],
        [("y/a", "x/a", "80", True), ("x/b", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "namespace-without-object-has-name-label": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels:"
                " {kubernetes.io/metadata.name: z}}}]}]}",
            )
        ],
        [("z/c", "x/a", "80", True), ("y/a", "x/a", "80", False)],
    ),
    "match-expressions-in-notin-exists-doesnotexist": Case(
        [
            netpol(
                "z",
                "p",
                """{podSelector: {}, ingress: [{from: [{namespaceSelector: {}, podSelector:
                {matchExpressions: [{key: app, operator: In, values: [a, b]},
                {key: tier, operator: NotIn, values: [db]}]}}]}]}""",
            ),
            netpol(
                "y",
                "p",
                """{podSelector: {matchExpressions: [{key: tier, operator: Exists}]},
                ingress: [{from: [{namespaceSelector: {}, podSelector:
                {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]}""",
            ),
        ],
        [
            ("x/a", "z/c", "80", True),
            ("y/b", "z/c", "80", True),
            ("x/b", "y/b", "80", True),
            ("z/c", "y/b", "80", False),
            ("z/c", "y/a", "80", True),
        ],
    ),
    "ipblock-matches-pod-ips": Case(
        [
            netpol(
                "x", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.2.0/24}}]}]}"
            )
        ],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "ipblock-except-is-subtracted": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8,"
                " except: [10.0.2.0/24]}}]}]}",
            )
        ],
        [("y/a", "x/a", "80", False), ("z/c", "x/a", "80", True)],
    ),
    "ipblock-all-ipv4": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}")],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", True)],
    ),
    "ipblock-ipv4-does-not-match-ipv6": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}")],
        [("y/a", "x/a", "80", False)],
        family="ipv6",
    ),
    "ipblock-all-ipv6": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: '::/0'}}]}]}")],
        [("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
        family="ipv6",
    ),
    "ipblock-ipv6-except": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 'fd00::/16',"
                " except: ['fd00::2:0/112']}}]}]}",
            )
        ],
        [("y/a", "x/a", "80", False)],
        family="ipv6",
    ),
    "ingress-named-port-resolves-on-target": Case(
        [netpol("y", "p", "{podSelector: {}, ingress: [{ports: [{port: http}]}]}")],
        [("x/a", "y/b", "8080", True), ("x/a", "y/b", "80", False), ("x/a", "y/a", "80", False)],
    ),
    "egress-named-port-resolves-on-peer": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {matchLabels: {app: b}}, policyTypes: [Egress],"
                " egress: [{ports: [{port: http}]}]}",
            )
        ],
        [("x/b", "x/a", "80", True), ("x/b", "y/b", "8080", True), ("x/b", "y/b", "80", False)],
    ),
    "named-port-protocol-must-match": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{ports: [{port: dns, protocol: UDP}]}]}")],
        [("y/a", "x/a", "53/UDP", True), ("y/a", "x/a", "53/TCP", False)],
    ),
    "port-without-protocol-is-tcp": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{ports: [{port: 53}]}]}")],
        [("y/a", "x/a", "53/TCP", True), ("y/a", "x/a", "53/UDP", False)],
    ),
    "protocol-without-port-is-every-port": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}")],
        [("y/a", "x/a", "5353/UDP", True), ("y/a", "x/a", "80/TCP", False)],
    ),
    "sctp-ports": Case(
        [
            netpol(
                "x", "p", "{podSelector: {}, ingress: [{ports: [{port: assoc, protocol: SCTP}]}]}"
            )
        ],
        [("y/a", "x/a", "9000/SCTP", True), ("y/a", "x/a", "9000/TCP", False)],
    ),
    "endport-range": Case(
        [netpol("x", "p", "{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 9000}]}]}")],
        [("y/a", "x/a", "8500", True), ("y/a", "x/a", "9000", True), ("y/a", "x/a", "9001", False)],
    ),
    "policies-add-up": Case(
        [
            netpol("x", "p1", "{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}"),
            netpol(
                "x",
                "p2",
                "{podSelector: {}, ingress: [{from: [{namespaceSelector:"
                " {matchLabels: {team: y}}}]}]}",
            ),
        ],
        [("x/b", "x/a", "80", True), ("y/a", "x/a", "80", True), ("z/c", "x/a", "80", False)],
    ),
    "egress-isolation-blocks-sender-only": Case(
        [netpol("x", "p", "{podSelector: {matchLabels: {app: a}}, policyTypes: [Egress]}")],
        [("x/a", "y/a", "80", False), ("y/a", "x/a", "80", True)],
    ),
    "both-sides-must-allow": Case(
        [
            netpol("x", "e", "{podSelector: {}, policyTypes: [Egress], egress: [{}]}"),
            netpol("y", "i", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}"),
            netpol("z", "i", "{podSelector: {}}"),
        ],
        [("x/a", "y/a", "80", True), ("x/a", "z/c", "80", False)],
    ),
    "hostnetwork-pods-never-selected": Case([DENY_X], [("y/a", "x/h", "80", True)]),
    "hostnetwork-peer-not-matched-by-selectors": Case(
        [netpol("y", "p", "{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}")],
        [("x/h", "y/a", "80", False), ("x/a", "y/a", "80", True)],
    ),
    "hostnetwork-peer-matched-by-ipblock": Case(
        [
            netpol(
                "y",
                "p",
                "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/24}}]}]}",
            )
        ],
        [("x/h", "y/a", "80", True), ("x/a", "y/a", "80", False)],
    ),
    "own-node-always-allowed-in": Case(
        [DENY_X, netpol("y", "deny", "podSelector: {}")],
        [("x/h", "x/a", "80", True), ("x/h", "y/a", "80", False)],
    ),
    # podwall filters a pod's traffic to its own node with its egress policy
    # (as kube-router and Calico do; the node is matched by address only)
    "pod-to-own-node-passes-egress-policy": Case(
        [netpol("x", "p", "{podSelector: {}, policyTypes: [Egress]}")],
        [("x/a", "x/h", "80", False)],
    ),
    "pod-to-own-node-allowed-by-the-node-address": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {}, policyTypes: [Egress], egress: [{to:"
                " [{ipBlock: {cidr: 192.168.0.1/32}}]}]}",
            )
        ],
        [("x/a", "x/h", "80", True)],
    ),
    "self-always-allowed": Case([DENY_X], [("x/a", "x/a", "80", True)]),
    "pod-without-ip-gets-selector-verdicts": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {matchLabels: {app: a}}, ingress: [{from:"
                " [{podSelector: {matchLabels: {app: b}}}]}]}",
            )
        ],
        [("x/noip", "x/a", "80", True)],
    ),
    "pod-without-ip-never-matches-ipblock": Case(
        [
            netpol(
                "x",
                "p",
                "{podSelector: {matchLabels: {app: a}}, ingress: [{from:"
                " [{ipBlock: {cidr: 0.0.0.0/0}}]}]}",
            )
        ],
        [("x/noip", "x/a", "80", False), ("x/b", "x/a", "80", True)],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_semantics(case: Case) -> None:
    snap = snapshot(*case.policies)
    assert snap.all_problems() == []
    got = [(s, d, p, reachable(snap, s, d, p, case.family)) for s, d, p, _ in case.checks]
    assert got == case.checks


INVALID = {
    "except-outside-cidr": "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8,"
    " except: [11.0.0.0/24]}}]}]}",
    "except-other-family": "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8,"
    " except: ['fd00::/64']}}]}]}",
    "bad-cidr": "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}",
    "endport-with-named-port": "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}",
    "endport-below-port": "{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}",
    "bad-protocol": "{podSelector: {}, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}",
    "bad-operator": "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions:"
    " [{key: a, operator: Near}]}}]}]}",
    "in-without-values": "{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions:"
    " [{key: a, operator: In}]}}]}]}",
    "ipblock-with-selector": "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8},"
    " podSelector: {}}]}]}",
    "empty-peer": "{podSelector: {}, ingress: [{from: [{}]}]}",
    "bad-policytype": "{podSelector: {}, policyTypes: [Sideways], ingress: [{}], egress: [{}]}",
    "invalid-podselector-selects-whole-namespace": "{podSelector: {matchExpressions:"
    " [{key: app, operator: Exists, values: [a]}]}, ingress: [{}]}",
    "port-name-digits-only": "{podSelector: {}, ingress: [{ports: [{port: '80'}]}]}",
}


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_invalid_policy_fails_closed(spec: str) -> None:
    snap = snapshot(netpol("x", "broken", spec))
    problems = snap.all_problems()
    assert [(p.kind, p.object_name, p.severity) for p in problems] == [
        ("NetworkPolicy", "x/broken", "error")
    ]
    assert "failing closed" in problems[0].reason
    assert not reachable(snap, "x/b", "x/a", "80")
    assert reachable(snap, "y/a", "y/b", "80"), "other namespaces are not affected"
