"""The upstream e2e NetworkPolicy cases (``tests/e2e/conformance``), answered
through explain with no lab: the pods get IPv4 addresses, IPv6 addresses, or
both, and every probe of every case must give the expected matrix in every
family explain answers in by default (the families the pods have).  Cases
naming addresses resolve them in one family at a time (an ipBlock holds one
family), as the dual-stack lab does."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from firewall_operator import cluster, questions
from firewall_operator.planner import Planner
from tests.e2e.conformance import harness

Json = dict[str, Any]
CASES = harness.load_cases("netpol.yaml") + harness.load_cases("fwrule.yaml")
STACKS = {"ipv4": ("ipv4",), "ipv6": ("ipv6",), "dual": ("ipv4", "ipv6")}


def _key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return (str(doc["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))


def _address(family: str, number: int) -> str:
    return f"10.244.{number}.10" if family == "ipv4" else f"fd00:244:{number:x}::10"


class Cluster:
    """The conformance topology as documents, with addresses in ``families``."""

    def __init__(self, families: tuple[str, ...]) -> None:
        self.docs: dict[tuple[str, str, str], Json] = {}
        number = 0
        for doc in harness.baseline_docs():
            doc = copy.deepcopy(doc)
            if doc["kind"] == "Pod":
                number += 1
                ips = [{"ip": _address(family, number)} for family in families]
                doc["status"] = {"phase": "Running", "podIPs": ips}
                doc["spec"]["nodeName"] = f"n{number % 2 + 1}"
            self.docs[_key(doc)] = doc

    def ips(self, family: str) -> dict[str, str]:
        return {
            f"{ns}/{name}": next(
                ip["ip"]
                for ip in doc["status"]["podIPs"]
                if (":" in ip["ip"]) == (family == "ipv6")
            )
            for (kind, ns, name), doc in self.docs.items()
            if kind == "Pod"
        }

    def play(self, step: Mapping[str, Any]) -> None:
        for doc in step.get("delete") or []:
            self.docs.pop(_key(doc), None)
        for doc in step.get("apply") or []:
            self.docs[_key(doc)] = harness.with_api_version(doc)
        for key, labels in (step.get("labels") or {}).items():
            kind, ns, name = ("Pod", *key.split("/")) if "/" in key else ("Namespace", "", key)
            self.docs[(kind, ns, name)]["metadata"]["labels"] = dict(labels)

    def snapshot(self) -> cluster.Snapshot:
        return cluster.Snapshot.from_documents(list(self.docs.values()))


def runs(case: Json) -> Iterator[tuple[str, str | None]]:
    """(stack, family addresses resolve in) for every way a case is played."""
    for stack, families in STACKS.items():
        if harness.uses_addresses(case):
            for family in families:
                yield stack, family
        else:
            yield stack, None


def failures(case: Json, stack: str, family: str | None) -> list[str]:
    lab = Cluster(STACKS[stack])
    ips = lab.ips(family or STACKS[stack][0])
    found = []
    for number, step in enumerate(case["steps"], 1):
        step = harness.resolve(step, ips, family or STACKS[stack][0])
        lab.play(step)
        snapshot = lab.snapshot()
        planner = Planner(snapshot)
        families = (family,) if family else questions.matrix_families(snapshot, None)
        assert family or families == STACKS[stack]  # by default: the pods' families
        for spec in step.get("probe") or []:
            port, protocol = spec.split("/")
            for matrix in questions.matrices(planner, families, port=int(port), protocol=protocol):
                wanted = harness.expected_matrix(list(matrix["pods"]), step.get("expect") or [])
                wrong = harness.differing(matrix["reachable"], wanted)  # type: ignore[arg-type]
                found += [f"step {number} {spec} {matrix['family']}: {w}" for w in wrong]
    return found


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case_in_every_stack(case: Json) -> None:
    problems = {
        f"{stack}{'/' + family if family else ''}": found
        for stack, family in runs(case)
        if (found := failures(case, stack, family))
    }
    assert problems == {}, case["it"]
