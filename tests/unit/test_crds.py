"""The CRDs: structure, printer columns, every CEL rule compiles with celpy,
and the FirewallRule schema (types, bounds, enums, CEL) agrees with
``firewall_operator.fwrule`` on example objects, valid and invalid."""

from __future__ import annotations

import pathlib
from typing import Any

import celpy
import pytest
import yaml

from firewall_operator import fwrule
from tests.unit.pw_policy import FIXTURES, fwr

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


def crd(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CRDS / f"{name}.podwall.io.yaml").read_text())
    return doc


def version(name: str) -> dict[str, Any]:
    (only,) = crd(name)["spec"]["versions"]
    return only  # type: ignore[no-any-return]


def cel_rules(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [v["rule"] for v in schema.get("x-kubernetes-validations", [])]
        return found + [r for value in schema.values() for r in cel_rules(value)]
    if isinstance(schema, list):
        return [r for item in schema for r in cel_rules(item)]
    return []


ENV = celpy.Environment()
TYPES = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """A small structural-schema validator: types, enums, bounds, required,
    and the CEL rules (evaluated with celpy), like the API server would."""
    kind = schema.get("type")
    if (kind and not isinstance(value, TYPES[kind])) or (kind == "integer" and value is True):
        return [f"{path}: not {kind}"]
    errors = []
    checks = [
        ("enum", lambda b: value in b),
        ("minimum", lambda b: value >= b),
        ("maximum", lambda b: value <= b),
        ("minLength", lambda b: len(value) >= b),
        ("maxLength", lambda b: len(value) <= b),
        ("minItems", lambda b: len(value) >= b),
        ("maxItems", lambda b: len(value) <= b),
    ]
    errors += [f"{path}: {key}" for key, ok in checks if key in schema and not ok(schema[key])]
    if isinstance(value, dict):
        errors += [f"{path}.{k}: required" for k in schema.get("required", []) if k not in value]
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += schema_errors(sub, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                errors += schema_errors(extra, item, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for number, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{number}]")
        if schema.get("x-kubernetes-list-type") == "map":
            keys = [tuple(i.get(k) for k in schema["x-kubernetes-list-map-keys"]) for i in value]
            errors += [f"{path}: duplicate map key"] if len(set(keys)) != len(keys) else []
    for validation in schema.get("x-kubernetes-validations", []):
        program = ENV.program(ENV.compile(validation["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path}: {validation['message']}")
    return errors


def test_firewallrule_crd_shape() -> None:
    doc = crd("firewallrules")
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["spec"]["scope"] == "Cluster"
    assert doc["spec"]["names"]["shortNames"] == ["fwr"]
    only = version("firewallrules")
    assert only["subresources"] == {"status": {}}
    columns = [c["name"] for c in only["additionalPrinterColumns"]]
    assert columns == ["Tier", "Priority", "Ingress", "Egress", "Valid", "Age"]


def test_nodefirewall_crd_shape() -> None:
    doc = crd("nodefirewalls")
    assert doc["spec"]["scope"] == "Cluster" and doc["spec"]["names"]["kind"] == "NodeFirewall"
    only = version("nodefirewalls")
    columns = [c["name"] for c in only["additionalPrinterColumns"]]
    assert columns == [
        "Backend",
        "Endpoints",
        "Rules",
        "Programmed",
        "Problems",
        "Last-Sync",
        "Watch",
        "Age",
    ]
    status = only["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    expected = {"backend", "endpoints", "chains", "rules", "setEntries", "lastSync", "lastError"}
    assert expected | {"programmedGenerations"} <= set(status)


@pytest.mark.parametrize("name", ["firewallrules", "nodefirewalls"])
def test_cel_rules_compile(name: str) -> None:
    rules = cel_rules(version(name)["schema"])
    assert name == "nodefirewalls" or len(rules) >= 6
    for rule in rules:
        ENV.compile(rule)


def fixture_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((FIXTURES / "compiler" / "tiers.yaml").read_text())
    return [doc for doc in docs if doc["kind"] == "FirewallRule"]


BASE = (
    "{tier: Admin, priority: 5, subject: {namespaces: {}}, ingress: [{name: r, action: Deny,"
    " from: [{namespaces: {}}]}]}"
)
EGRESS_NODES = (
    "{tier: Admin, priority: 5, subject: {namespaces: {}}, egress: [{name: r, action: Deny,"
    " to: [{nodes: {}}]}]}"
)
BAD = {
    "priority": BASE.replace("5", "1001"),
    "tier": BASE.replace("Admin", "Top"),
    "two-subjects": BASE.replace(
        "{namespaces: {}}, ingress",
        "{namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}, ingress",
    ),
    "no-subject": BASE.replace("subject: {namespaces: {}}, ", "subject: {}, "),
    "peer-two-kinds": BASE.replace(
        "[{namespaces: {}}]}", "[{namespaces: {}, networks: [10.0.0.0/8]}]}"
    ),
    "bad-cidr": BASE.replace("[{namespaces: {}}]}", "[{networks: [10.0.0.0/33]}]}"),
    "range": BASE.replace("}]}]}", "}], ports: [{portRange: {start: 9, end: 1}}]}]}"),
    "port-two-kinds": BASE.replace(
        "}]}]}", "}], ports: [{namedPort: http, portNumber: {port: 1}}]}]}"
    ),
    "bad-named-port": BASE.replace("}]}]}", "}], ports: [{namedPort: '80'}]}]}"),
    "in-without-values": BASE.replace(
        "subject: {namespaces: {}}",
        "subject: {namespaces: {matchExpressions: [{key: a, operator: In}]}}",
    ),
    "empty-from": BASE.replace("from: [{namespaces: {}}]", "from: []"),
    "duplicate-names": BASE.replace(
        "}]}]}", "}]}, {name: r, action: Allow, from: [{namespaces: {}}]}]}"
    ),
    "ingress-nodes-peer": BASE.replace("[{namespaces: {}}]}", "[{nodes: {}}]}"),
    "egress-nodes-and-networks": EGRESS_NODES.replace(
        "[{nodes: {}}]", "[{nodes: {}, networks: [10.0.0.0/8]}]"
    ),
}


def spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = version("firewallrules")["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize(
    "doc",
    [*fixture_rules(), fwr("base", BASE), fwr("nodes", EGRESS_NODES)],
    ids=lambda d: d["metadata"]["name"],
)
def test_valid_examples_pass_crd_and_validator(doc: dict[str, Any]) -> None:
    assert schema_errors(spec_schema(), doc) == []
    assert fwrule.parse(doc).valid


@pytest.mark.parametrize("spec", BAD.values(), ids=BAD.keys())
def test_invalid_examples_fail_crd_and_validator(spec: str) -> None:
    doc = fwr("bad", spec)
    assert schema_errors(spec_schema(), doc) != []
    assert not fwrule.parse(doc).valid
