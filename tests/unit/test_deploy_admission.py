"""``deploy/admission``: each node's agent may write only its own NodeFirewall.

The API server double does not authenticate callers, so it cannot evaluate a
ValidatingAdmissionPolicy on ``request.userInfo``; this test evaluates the
policy's CEL with celpy the way kube-apiserver does: the resource rules, then
the match conditions (all must hold, else the policy does not apply), then
the variables in order, then each validation (false: denied, with the
message expression's text).  Requests are shaped like the admission
request kube-apiserver builds for a pod-bound ServiceAccount token
(``userInfo.extra["authentication.kubernetes.io/node-name"]``, Kubernetes
1.30+).
"""

from __future__ import annotations

import pathlib
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes

ROOT = pathlib.Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "deploy" / "admission" / "admission.yaml"
AGENT = "system:serviceaccount:podwall-system:podwall-agent"
NODE_NAME = "authentication.kubernetes.io/node-name"
ENV = celpy.Environment()


def documents() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(POLICY_FILE.read_text()) if d}


def evaluate(expression: str, activation: dict[str, Any]) -> Any:
    program = ENV.program(ENV.compile(expression))
    return program.evaluate(activation)


def matches_resource(spec: dict[str, Any], request: dict[str, Any]) -> bool:
    resource = request["resource"]["resource"]
    if request.get("subResource"):
        resource += "/" + request["subResource"]
    return any(
        request["resource"]["group"] in rule["apiGroups"]
        and resource in rule["resources"]
        and request["operation"] in rule["operations"]
        for rule in spec["matchConstraints"]["resourceRules"]
    )


def admit(request: dict[str, Any], obj: Any, old: Any) -> tuple[bool, str]:
    """(admitted, why): 'not matched', '' or the denial message."""
    spec = documents()["ValidatingAdmissionPolicy"]["spec"]
    if not matches_resource(spec, request):
        return True, "not matched"
    activation: dict[str, Any] = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
    }
    for condition in spec["matchConditions"]:
        if not evaluate(condition["expression"], activation):
            return True, "not matched"
    variables: dict[Any, Any] = {}
    for variable in spec["variables"]:
        activation["variables"] = celtypes.MapType(variables)
        variables[celtypes.StringType(variable["name"])] = evaluate(
            variable["expression"], activation
        )
    activation["variables"] = celtypes.MapType(variables)
    for validation in spec["validations"]:
        if not evaluate(validation["expression"], activation):
            return False, str(evaluate(validation["messageExpression"], activation))
    return True, ""


def nodefirewall(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "NodeFirewall",
        "metadata": {"name": name},
        "spec": {"nodeName": name},
    }


def request(
    operation: str,
    name: str,
    *,
    user: str = AGENT,
    node: str | None = "node-1",
    sub: str = "",
    resource: str = "nodefirewalls",
) -> dict[str, Any]:
    extra = {} if node is None else {NODE_NAME: [node]}
    extra["authentication.kubernetes.io/pod-name"] = ["podwall-agent-x7k2p"]
    return {
        "operation": operation,
        "name": name,
        "resource": {"group": "podwall.io", "version": "v1alpha1", "resource": resource},
        "subResource": sub,
        "userInfo": {"username": user, "groups": ["system:serviceaccounts"], "extra": extra},
    }


def test_every_expression_compiles() -> None:
    spec = documents()["ValidatingAdmissionPolicy"]["spec"]
    expressions = [c["expression"] for c in spec["matchConditions"]]
    expressions += [v["expression"] for v in spec["variables"]]
    for validation in spec["validations"]:
        expressions += [validation["expression"], validation["messageExpression"]]
    for expression in expressions:
        ENV.compile(expression)


def test_the_binding_denies_with_the_policy() -> None:
    found = documents()
    policy, binding = found["ValidatingAdmissionPolicy"], found["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == {"nodefirewalls", "nodefirewalls/status"}
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}


CASES = {
    "own status": (request("UPDATE", "node-1", sub="status"), "node-1", True, ""),
    "own object": (request("CREATE", "node-1"), "node-1", True, ""),
    "another node's status": (
        request("UPDATE", "node-2", sub="status"),
        "node-2",
        False,
        "may write only NodeFirewall node-1, not node-2",
    ),
    "another node's object": (
        request("CREATE", "node-2"),
        "node-2",
        False,
        "may write only NodeFirewall node-1, not node-2",
    ),
    "a generated name": (request("CREATE", ""), "node-1-x2k9q", False, "not "),
    "a token without node name": (
        request("UPDATE", "node-1", sub="status", node=None),
        "node-1",
        False,
        "carries no node name",
    ),
    "an administrator": (
        request("UPDATE", "node-2", sub="status", user="kubernetes-admin", node=None),
        "node-2",
        True,
        "not matched",
    ),
    "another service account": (
        request("UPDATE", "node-2", user="system:serviceaccount:other:podwall-agent"),
        "node-2",
        True,
        "not matched",
    ),
    "firewallrule status": (
        request("UPDATE", "r1", sub="status", resource="firewallrules"),
        "r1",
        True,
        "not matched",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_agent_writes_only_its_own_nodefirewall(case: str) -> None:
    req, name, admitted, why = CASES[case]
    obj = nodefirewall(name)
    old = None if req["operation"] == "CREATE" else obj
    got, message = admit(req, obj, old)
    assert got is admitted, message
    assert why in message


def test_a_delete_of_another_node_is_refused() -> None:
    got, message = admit(request("DELETE", "node-2"), None, nodefirewall("node-2"))
    assert not got
    assert "not node-2" in message
