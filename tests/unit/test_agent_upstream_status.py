"""The ``Accepted`` condition of the upstream cluster policies: True with the
rule counts, False/UnsupportedField saying which rules fail closed and how,
False/Invalid for schema violations; written only when it changes (once per
generation), keeping lastTransitionTime while the status stays."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_operator import upstream
from firewall_operator.agent.cache import rule_meta
from firewall_operator.agent.upstream_status import accepted_condition, desired_status

NOW = "2030-01-01T00:00:00Z"


def cnp(egress: list[dict[str, Any]], *, generation: int = 3, status: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "c", "generation": generation, "resourceVersion": "9"},
        "spec": {
            "tier": "Admin",
            "priority": 1,
            "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": egress,
        },
    }
    if status is not None:
        doc["status"] = status
    return doc


OK = [{"action": "Accept", "to": [{"networks": ["10.0.0.0/8"]}]}]
DNS = [{"name": "web", "action": "Accept", "to": [{"domainNames": ["a.io"]}]}]
BAD = [{"action": "Accept", "to": [{"networks": ["10.0.0.0/33"]}]}]


@pytest.mark.parametrize(
    ("egress", "status", "reason", "text"),
    [
        (OK, "True", "Accepted", "podwall: enforced as written, 1 ingress and 1 egress rules"),
        (DNS, "False", "UnsupportedField", "1 ingress and 0 egress rules in force; spec.egress"),
        (BAD, "False", "Invalid", "podwall: spec.egress[0].to[0].networks[0]: '10.0.0.0/33'"),
    ],
    ids=["accepted", "fails-closed", "invalid"],
)
def test_condition(egress: list[dict[str, Any]], status: str, reason: str, text: str) -> None:
    found = accepted_condition(upstream.parse(cnp(egress)), 3)
    assert found[:2] == (status, reason) and found[3] == 3
    assert found[2].startswith(text) or text in found[2], found[2]


def test_written_once_per_generation_and_transition_kept() -> None:
    doc = cnp(OK)
    rule = upstream.parse(doc)
    other = {"type": "Ready-In-Zone-a", "status": "True"}
    first = desired_status(rule, rule_meta(doc, "Accepted"), [other], now=NOW)
    assert first is not None
    assert first["conditions"][0] == other
    ours = first["conditions"][1]
    assert (ours["type"], ours["status"], ours["observedGeneration"]) == ("Accepted", "True", 3)
    written = cnp(OK, status=first)
    assert desired_status(rule, rule_meta(written, "Accepted"), [other], now="later") is None
    newer = cnp(OK, generation=4, status=first)
    again = desired_status(upstream.parse(newer), rule_meta(newer, "Accepted"), [], now="later")
    assert again is not None
    assert again["conditions"][0]["lastTransitionTime"] == NOW, "status unchanged: time kept"
    assert again["conditions"][0]["observedGeneration"] == 4
