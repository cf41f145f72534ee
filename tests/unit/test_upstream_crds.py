"""The vendored upstream CRDs (``crds/upstream``): unmodified copies of the
pinned releases (header and sha256), the kinds and printer columns the
upstream API defines, CEL rules that the API double's celpy compiles, and the
kinds ``firewall_operator.upstream`` reads."""

from __future__ import annotations

import hashlib
import pathlib
import re
from typing import Any

import celpy
import pytest
import yaml

from firewall_operator import upstream
from tests.unit.test_crds import cel_rules

FOLDER = pathlib.Path(__file__).resolve().parents[2] / "crds" / "upstream"
UPSTREAM_RELEASES = {
    "policy.networking.k8s.io_clusternetworkpolicies.yaml": (
        "v0.2.0",
        "a17adecd0316b8ff1c3f83939ec0441d68cd6cce",
    ),
    "policy.networking.k8s.io_adminnetworkpolicies.yaml": (
        "v0.1.8",
        "5a62954284765fb16f2e601f11907ca0b839b89f",
    ),
    "policy.networking.k8s.io_baselineadminnetworkpolicies.yaml": (
        "v0.1.8",
        "5a62954284765fb16f2e601f11907ca0b839b89f",
    ),
}
HEADER = re.compile(
    r"\A# Vendored unmodified \(below this header\) from\n"
    r"#   https://github\.com/kubernetes-sigs/network-policy-api\n"
    r"#   release (?P<tag>v[0-9.]+), commit (?P<commit>[0-9a-f]{40}),\n"
    r"#   file config/crd/experimental/(?P<file>[a-z0-9._]+)\n"
    r"#   sha256 (?P<sha>[0-9a-f]{64})\n"
    r"# Copyright The Kubernetes Authors; Apache License 2\.0 \(LICENSE in this folder\)\.\n"
)
COLUMNS = {
    "ClusterNetworkPolicy": ["Tier", "Priority", "Age"],
    "AdminNetworkPolicy": ["Priority", "Age"],
    "BaselineAdminNetworkPolicy": ["Age"],
}
SHORT = {
    "ClusterNetworkPolicy": "cnp",
    "AdminNetworkPolicy": "anp",
    "BaselineAdminNetworkPolicy": "banp",
}


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((FOLDER / name).read_text())
    return doc


@pytest.mark.parametrize("name", UPSTREAM_RELEASES)
def test_vendored_file_is_an_unmodified_copy(name: str) -> None:
    raw = (FOLDER / name).read_bytes()
    found = HEADER.match(raw.decode())
    assert found, f"{name}: provenance header missing or changed"
    assert (found["tag"], found["commit"]) == UPSTREAM_RELEASES[name]
    assert found["file"] == name
    body = raw[found.end() :]
    assert hashlib.sha256(body).hexdigest() == found["sha"], f"{name} was edited"
    assert (FOLDER / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize("name", UPSTREAM_RELEASES)
def test_kinds_columns_and_versions(name: str) -> None:
    doc = load(name)
    names = doc["spec"]["names"]
    flavor = upstream.KINDS[names["kind"]]
    assert doc["spec"]["group"] == upstream.GROUP and doc["spec"]["scope"] == "Cluster"
    assert names["plural"] == flavor.plural and names["shortNames"] == [SHORT[flavor.kind]]
    (version,) = doc["spec"]["versions"]
    assert version["name"] == flavor.version and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == COLUMNS[flavor.kind]
    assert doc["metadata"]["annotations"]["policy.networking.k8s.io/channel"] == "experimental"


@pytest.mark.parametrize("name", UPSTREAM_RELEASES)
def test_cel_rules_compile(name: str) -> None:
    (version,) = load(name)["spec"]["versions"]
    rules = cel_rules(version["schema"])
    assert rules
    env = celpy.Environment()
    for rule in rules:
        env.compile(rule)


def test_kustomization_lists_every_vendored_file() -> None:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(UPSTREAM_RELEASES)
