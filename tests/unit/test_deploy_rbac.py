"""The agent's ClusterRole grants exactly the API calls the agent makes.

The request → permission mapping is checked on hand-written requests; the
ClusterRole in ``deploy/base/rbac.yaml`` is checked for hygiene (no wildcards, no
secrets) and, once the agent e2e tests have recorded the agent's requests from
the API server double into ``tests/e2e/recorded_agent_calls.json``, compared
with them: a missing or a surplus permission fails.  Likewise the base
ClusterRole plus the one of ``deploy/components/upstream-policy-rbac`` against
the calls of agents run with ``--upstream-policy``
(``tests/e2e/recorded_agent_calls_upstream.json``).
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from tests import rbac_audit
from tests.rbac_audit import Discovery, Forbidden, Permission

ROOT = pathlib.Path(__file__).resolve().parents[2]
RBAC_FILE = ROOT / "deploy" / "base" / "rbac.yaml"
UPSTREAM_RBAC_FILE = ROOT / "deploy" / "components" / "upstream-policy-rbac" / "rbac.yaml"
RECORDED = ROOT / "tests" / "e2e" / "recorded_agent_calls.json"
RECORDED_UPSTREAM = ROOT / "tests" / "e2e" / "recorded_agent_calls_upstream.json"
NPA = "policy.networking.k8s.io"
#: the agent's requests carry kopf's User-Agent ("kopf/<version>")
AGENT_USER_AGENT = "kopf"

PW = "podwall.io"


def P(verb: str, group: str, resource: str, sub: str = "") -> Permission:
    return Permission(verb=verb, group=group, resource=resource, subresource=sub)


MAPPING = [
    ("list-pods-all", "GET", "/api/v1/pods", "limit=500", P("list", "", "pods")),
    (
        "watch-pods-all",
        "GET",
        "/api/v1/pods",
        "watch=true&resourceVersion=7",
        P("watch", "", "pods"),
    ),
    ("watch-1", "GET", "/api/v1/pods", "watch=1", P("watch", "", "pods")),
    ("watch-false", "GET", "/api/v1/pods", "watch=false", P("list", "", "pods")),
    (
        "watch-node-pods",
        "GET",
        "/api/v1/pods",
        "fieldSelector=spec.nodeName%3Dn1&watch=true",
        P("watch", "", "pods"),
    ),
    ("legacy-watch-prefix", "GET", "/api/v1/watch/namespaces/x/pods", "", P("watch", "", "pods")),
    ("list-pods-in-ns", "GET", "/api/v1/namespaces/x/pods", "", P("list", "", "pods")),
    ("get-pod", "GET", "/api/v1/namespaces/x/pods/a", "", P("get", "", "pods")),
    ("head-pod", "HEAD", "/api/v1/namespaces/x/pods/a", "", P("get", "", "pods")),
    (
        "pod-status",
        "PATCH",
        "/api/v1/namespaces/x/pods/a/status",
        "",
        P("patch", "", "pods", "status"),
    ),
    ("list-namespaces", "GET", "/api/v1/namespaces", "", P("list", "", "namespaces")),
    ("get-namespace", "GET", "/api/v1/namespaces/x", "", P("get", "", "namespaces")),
    (
        "namespace-status",
        "PUT",
        "/api/v1/namespaces/x/status",
        "",
        P("update", "", "namespaces", "status"),
    ),
    (
        "namespace-finalize",
        "PUT",
        "/api/v1/namespaces/x/finalize",
        "",
        P("update", "", "namespaces", "finalize"),
    ),
    (
        "post-core-event",
        "POST",
        "/api/v1/namespaces/podwall-system/events",
        "",
        P("create", "", "events"),
    ),
    (
        "post-events-k8s-io",
        "POST",
        "/apis/events.k8s.io/v1/namespaces/x/events",
        "",
        P("create", "events.k8s.io", "events"),
    ),
    (
        "watch-netpol",
        "GET",
        "/apis/networking.k8s.io/v1/networkpolicies",
        "watch=true",
        P("watch", "networking.k8s.io", "networkpolicies"),
    ),
    (
        "list-fwr",
        "GET",
        "/apis/podwall.io/v1alpha1/firewallrules",
        "",
        P("list", PW, "firewallrules"),
    ),
    (
        "fwr-status-merge-patch",
        "PATCH",
        "/apis/podwall.io/v1alpha1/firewallrules/r1/status",
        "",
        P("patch", PW, "firewallrules", "status"),
    ),
    (
        "create-nodefirewall",
        "POST",
        "/apis/podwall.io/v1alpha1/nodefirewalls",
        "",
        P("create", PW, "nodefirewalls"),
    ),
    (
        "patch-nodefirewall",
        "PATCH",
        "/apis/podwall.io/v1alpha1/nodefirewalls/n1",
        "",
        P("patch", PW, "nodefirewalls"),
    ),
    (
        "put-nodefirewall-status",
        "PUT",
        "/apis/podwall.io/v1alpha1/nodefirewalls/n1/status",
        "",
        P("update", PW, "nodefirewalls", "status"),
    ),
    (
        "delete-one",
        "DELETE",
        "/apis/podwall.io/v1alpha1/nodefirewalls/n1",
        "",
        P("delete", PW, "nodefirewalls"),
    ),
    (
        "delete-collection",
        "DELETE",
        "/apis/podwall.io/v1alpha1/nodefirewalls",
        "",
        P("deletecollection", PW, "nodefirewalls"),
    ),
    (
        "crd-watch",
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "watch=true",
        P("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
    ),
    ("list-nodes", "GET", "/api/v1/nodes", "limit=500", P("list", "", "nodes")),
    ("watch-nodes", "GET", "/api/v1/nodes", "watch=true", P("watch", "", "nodes")),
    (
        "list-cnp",
        "GET",
        f"/apis/{NPA}/v1alpha2/clusternetworkpolicies",
        "",
        P("list", NPA, "clusternetworkpolicies"),
    ),
    (
        "get-banp",
        "GET",
        f"/apis/{NPA}/v1alpha1/baselineadminnetworkpolicies/default",
        "",
        P("get", NPA, "baselineadminnetworkpolicies"),
    ),
    (
        "anp-status",
        "PATCH",
        f"/apis/{NPA}/v1alpha1/adminnetworkpolicies/a/status",
        "",
        P("patch", NPA, "adminnetworkpolicies", "status"),
    ),
    ("trailing-slash", "GET", "/api/v1/pods/", "", P("list", "", "pods")),
    ("discovery-api", "GET", "/api", "", Discovery("/api")),
    ("discovery-core-v1", "GET", "/api/v1", "", Discovery("/api/v1")),
    ("discovery-apis", "GET", "/apis", "", Discovery("/apis")),
    ("discovery-group", "GET", "/apis/podwall.io", "", Discovery("/apis/podwall.io")),
    (
        "discovery-group-version",
        "GET",
        "/apis/podwall.io/v1alpha1",
        "",
        Discovery("/apis/podwall.io/v1alpha1"),
    ),
    ("version", "GET", "/version", "", Discovery("/version")),
    ("openapi", "GET", "/openapi/v3", "", Discovery("/openapi/v3")),
    ("metrics-needs-rule", "GET", "/metrics", "", Forbidden("GET", "/metrics")),
    ("post-to-discovery", "POST", "/apis", "", Forbidden("POST", "/apis")),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [row[1:] for row in MAPPING],
    ids=[row[0] for row in MAPPING],
)
def test_request_maps_to_permission(
    method: str, path: str, query: str, expected: rbac_audit.Classified
) -> None:
    assert rbac_audit.permission_of(method, path, query) == expected


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(rbac_audit.AuditError):
        rbac_audit.permission_of("OPTIONS", "/api/v1/pods")


def agent_rules(path: pathlib.Path = RBAC_FILE) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert len(roles) == 1, f"{path.relative_to(ROOT)} holds one ClusterRole"
    rules: list[dict[str, Any]] = roles[0]["rules"]
    return rules


def test_comparison_reports_missing_and_surplus() -> None:
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [PW], "resources": ["firewallrules/status"], "verbs": ["patch"]},
    ]
    requests = [
        {"method": "GET", "path": "/api/v1/pods", "query": "watch=true"},
        {"method": "GET", "path": "/api/v1/namespaces", "query": ""},
        {"method": "GET", "path": "/apis", "query": ""},
    ]
    result = rbac_audit.compare(rules, requests)
    assert result.missing == {P("list", "", "namespaces")}
    assert result.surplus == {P("list", "", "pods"), P("patch", PW, "firewallrules", "status")}
    assert not result.exact
    assert "missing: list core/namespaces" in result.explain()


def test_comparison_exact() -> None:
    rules = [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    requests = [{"method": "POST", "path": "/api/v1/namespaces/a/events"}]
    assert rbac_audit.compare(rules, requests).exact


def test_save_and_load_keep_what_decides(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "calls.json")
    requests = [
        {
            "method": "GET",
            "path": "/api/v1/pods",
            "query": "watch=true&resourceVersion=1",
            "user_agent": "kopf/1.45.2",
        },
        {
            "method": "GET",
            "path": "/api/v1/pods",
            "query": "resourceVersion=2&watch=true",
            "user_agent": "kopf/1.45.2",
        },
        {"method": "GET", "path": "/api/v1/pods", "query": "limit=5", "user_agent": "kubectl"},
    ]
    rbac_audit.save_recorded(path, requests, source="unit")
    loaded = rbac_audit.load_recorded(path)
    assert len(loaded) == 2
    agent = rbac_audit.select(loaded, user_agent=AGENT_USER_AGENT)
    assert [(r["path"], r["query"]) for r in agent] == [("/api/v1/pods", "watch=true")]


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["a"]},
    ],
    ids=["group", "resource", "subresource", "verb", "resource-names"],
)
def test_wildcards_are_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(rbac_audit.AuditError):
        rbac_audit.granted([rule])


def test_cluster_role_hygiene() -> None:
    """No wildcards, nothing on secrets, no non-resource URLs, no escalation verbs."""
    rules = agent_rules()
    have = rbac_audit.granted(rules)  # raises on wildcards/resourceNames/nonResourceURLs
    assert not [p for p in have if p.resource in ("secrets", "configmaps", "serviceaccounts")]
    assert not [
        p
        for p in have
        if p.verb in ("escalate", "bind", "impersonate", "delete", "deletecollection", "update")
    ]
    assert not [p for p in have if p.verb != "create" and p.resource == "events"]
    # the contract, spelled out; "get" by name is left out on purpose: the
    # agent never makes such a call, and test_cluster_role_matches_recorded_agent_calls
    # refuses permissions it does not use
    for verb in ("list", "watch"):
        for group, resource in (
            ("", "pods"),
            ("", "namespaces"),
            ("", "nodes"),
            ("networking.k8s.io", "networkpolicies"),
            (PW, "firewallrules"),
        ):
            assert P(verb, group, resource) in have
    assert P("patch", PW, "firewallrules", "status") in have
    assert {P("create", PW, "nodefirewalls"), P("patch", PW, "nodefirewalls", "status")} <= have
    assert P("create", "", "events") in have


def test_cni_watch_role_reads_one_daemonset_and_nothing_else() -> None:
    """The namespaced Role holds only ``get`` of the podwall DaemonSet and Namespace, by name."""
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    roles = [d for d in docs if d["kind"] == "Role"]
    assert [r["metadata"]["name"] for r in roles] == ["podwall-cni-watch"]
    assert roles[0]["metadata"]["namespace"] == "podwall-system"
    assert roles[0]["rules"] == [
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets"],
            "resourceNames": ["podwall-agent"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": ["podwall-system"],
            "verbs": ["get"],
        },
    ]


@pytest.mark.skipif(
    not RECORDED.exists(),
    reason=f"{RECORDED.relative_to(ROOT)} not recorded yet: the agent e2e tests write it from "
    "the API server double's request log (tests/rbac_audit.save_recorded)",
)
def test_cluster_role_matches_recorded_agent_calls() -> None:
    requests = rbac_audit.select(
        rbac_audit.load_recorded(str(RECORDED)), user_agent=AGENT_USER_AGENT
    )
    assert requests, f"no request with User-Agent {AGENT_USER_AGENT!r} in {RECORDED}"
    result = rbac_audit.compare(agent_rules(), requests)
    assert result.exact, "deploy/base/rbac.yaml vs the agent's recorded calls:\n" + result.explain()


def test_upstream_policy_role_hygiene_and_binding() -> None:
    """The component's ClusterRole reads the three upstream kinds and patches
    their status, nothing else; it is bound to the agent's ServiceAccount."""
    have = rbac_audit.granted(agent_rules(UPSTREAM_RBAC_FILE))
    kinds = ("clusternetworkpolicies", "adminnetworkpolicies", "baselineadminnetworkpolicies")
    assert have == {P(verb, NPA, kind) for kind in kinds for verb in ("get", "list", "watch")} | {
        P("patch", NPA, kind, "status") for kind in kinds
    }
    docs = [d for d in yaml.safe_load_all(UPSTREAM_RBAC_FILE.read_text()) if d]
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == "podwall-agent-upstream-policy"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podwall-agent", "namespace": "podwall-system"}
    ]


@pytest.mark.skipif(
    not RECORDED_UPSTREAM.exists(),
    reason=f"{RECORDED_UPSTREAM.relative_to(ROOT)} not recorded yet: "
    "tests/e2e/test_agent_upstream.py writes it",
)
def test_base_and_upstream_roles_match_recorded_upstream_agent_calls() -> None:
    requests = rbac_audit.select(
        rbac_audit.load_recorded(str(RECORDED_UPSTREAM)), user_agent=AGENT_USER_AGENT
    )
    assert any(NPA in r["path"] for r in requests), "no upstream call recorded"
    rules = agent_rules() + agent_rules(UPSTREAM_RBAC_FILE)
    result = rbac_audit.compare(rules, requests)
    assert result.exact, "base + upstream-policy-rbac vs recorded calls:\n" + result.explain()
