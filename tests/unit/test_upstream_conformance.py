"""Every upstream conformance test through ``podwall explain``'s semantics:
network-policy-api v0.2.0 (ClusterNetworkPolicy, the current release) and
v0.1.8 (AdminNetworkPolicy and BaselineAdminNetworkPolicy, the last release
that tests them), node peers included.  Each test's manifests are applied,
its subtests' mutations played in order, and every poke's verdict must be
upstream's expectation.  The lab runs the same data through the kernel
(``tests/e2e/conformance/test_upstream.py``)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import pathlib
import re
from typing import Any

import pytest
import yaml

from firewall_lab.lab import objects
from firewall_lab.lab.layout import Layout
from tests import upstream_conformance as uc

CASES = [case for release in uc.RELEASES for case in uc.load(release)]


def topology() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The lab's topology with the IPs the lab would give (hostNetwork pods
    the node's) and the lab's Node objects."""
    layout = Layout("/nonexistent", "unit", nodes=2)
    nodes = {node.name: node for node in layout.node_list()}
    docs, ips = [], {}
    for number, doc in enumerate(uc.cluster_docs()):
        doc = copy.deepcopy(doc)
        if doc["kind"] == "Pod":
            node = nodes[doc["spec"]["nodeName"]]
            host = doc["spec"].get("hostNetwork")
            ip = node.ip4 if host else f"10.244.{node.index}.{number + 2}"
            doc["status"] = {"phase": "Running", "podIPs": [{"ip": ip}]}
            ips[f"{doc['metadata']['namespace']}/{doc['metadata']['name']}"] = ip
        docs.append(doc)
    return docs + [objects.node_doc(layout, node) for node in nodes.values()], ips


BASE, IPS = topology()


def play(case: uc.Case) -> list[str]:
    """Every poke whose explained verdict differs from upstream's."""
    state = {(d["kind"], d["metadata"]["name"]): d for d in case.documents()}
    failures = []
    for number, step in enumerate(case.steps, 1):
        for op in step.mutate:
            if "delete" in op:
                gone = uc.delete_target(op)
                del state[(gone["kind"], gone["metadata"]["name"])]
            else:
                current = uc.find(list(state.values()), op["policy"])
                key = (current["kind"], op["policy"])
                state[key] = uc.apply_mutation(current, op, IPS)
        explainer = uc.Explainer(BASE + list(state.values()))
        assert [p for p in explainer.snapshot.all_problems() if p.severity == "error"] == []
        failures += [
            f"step {number} ({step.it}): {poke}, explain says the opposite"
            for poke in step.pokes
            if explainer.allowed(poke) != poke.expected
        ]
    return failures


@pytest.mark.parametrize("case", CASES, ids=[f"{c.release}-{c.id}" for c in CASES])
def test_case_through_explain(case: uc.Case) -> None:
    failures = play(case)
    assert not failures, "\n".join(failures)


def test_transcription_is_complete() -> None:
    """What the Go sources hold: 24 tests, 92 subtests, 289 pokes per release,
    and the kinds each release tests."""
    for release, kinds in (
        ("v0.2.0", {"ClusterNetworkPolicy", "NetworkPolicy"}),
        ("v0.1.8", {"AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "NetworkPolicy"}),
    ):
        cases = uc.load(release)
        assert len(cases) == 24
        assert sum(len(c.steps) for c in cases) == 92
        assert sum(len(s.pokes) for c in cases for s in c.steps) == 289
        assert {d["kind"] for c in cases for d in c.documents()} == kinds


def test_a_wrong_expectation_is_caught() -> None:
    """The comparison can fail: flip one expectation."""
    case = next(c for c in CASES if c.id == "CNPAdminTierPriorityField")
    step = case.steps[0]
    flipped = dataclasses.replace(step.pokes[0], expected=not step.pokes[0].expected)
    broken = uc.Case(
        case.release, case.id, case.source, case.manifests, (uc.Step(step.it, (), (flipped,)),)
    )
    assert len(play(broken)) == 1


HEADER = re.compile(
    r"\A# Vendored unmodified \(below this header\) from\n"
    r"#   https://github\.com/kubernetes-sigs/network-policy-api\n"
    r"#   release (?P<tag>v[0-9.]+), commit (?P<commit>[0-9a-f]{40}),\n"
    r"#   file conformance/base/(?P<file>[a-z_/.-]+)\n"
    r"#   sha256 (?P<sha>[0-9a-f]{64})\n"
    r"# Copyright The Kubernetes Authors; Apache License 2\.0 \(crds/upstream/LICENSE\)\.\n"
)
VENDORED = sorted(path for release in uc.RELEASES for path in (uc.DATA / release).rglob("*.yaml"))


@pytest.mark.parametrize("path", VENDORED, ids=lambda p: str(p.relative_to(uc.DATA)))
def test_vendored_manifest_is_an_unmodified_copy(path: pathlib.Path) -> None:
    raw = path.read_text()
    found = HEADER.match(raw)
    assert found, "provenance header missing or changed"
    release = path.relative_to(uc.DATA).parts[0]
    data = yaml.safe_load((uc.DATA / f"cases-{release}.yaml").read_text())
    assert (found["tag"], found["commit"]) == (release, data["commit"])
    assert found["file"] == str(path.relative_to(uc.DATA / release))
    assert hashlib.sha256(raw[found.end() :].encode()).hexdigest() == found["sha"]


def test_every_vendored_manifest_is_used() -> None:
    used = {f"{c.release}/{name}" for c in CASES for name in c.manifests}
    assert used == {str(p.relative_to(uc.DATA)) for p in VENDORED}
