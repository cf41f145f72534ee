"""Kernel vs model on random labels and policies (hypothesis).

A small space on the lab's nine pods: two label values per namespace and per
pod, one to three NetworkPolicies (ingress and/or egress; peers by namespace,
pod, both or ipBlock; ports numeric, named or any), sometimes an Admin or
Baseline FirewallRule.  Each example is compiled, applied and probed on one
port and family; the kernel must agree with ``evaluate.matrix``.  Few
examples, no deadline, no shrinking (each example costs seconds of probes).
The examples are split between the two data planes (``nftables`` and
``iptables-nft``, one lab each); ``PODWALL_TEST_BACKEND`` picks one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import kernel_ready
from tests.kernel import policy_lab

ONLY = os.environ.get("PODWALL_TEST_BACKEND")
BACKENDS = (ONLY,) if ONLY else ("nftables", "iptables-nft")
EXAMPLES = int(os.environ.get("PODWALL_RANDOM_EXAMPLES", "15"))
PER_BACKEND = -(-EXAMPLES // len(BACKENDS))  # split, rounded up
FAMILIES = ("ipv4", "ipv6")
TEAMS = ("red", "blue")
ROLES = ("fe", "be")


@pytest.fixture(scope="module")
def labs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[policy_lab.Labs]:
    if kernel_ready() is not None:
        pytest.skip(kernel_ready() or "")
    made = policy_lab.Labs(lambda backend: str(tmp_path_factory.mktemp(f"randomlab-{backend}")))
    try:
        yield made
    finally:
        made.stop()


selector: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.sampled_from(ROLES).map(lambda role: {"matchLabels": {"role": role}}),
)
team_selector: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}),
    st.sampled_from(TEAMS).map(lambda team: {"matchLabels": {"team": team}}),
)
ip_block = st.sampled_from(
    [
        {"cidr": "10.244.1.0/29", "except": ["10.244.1.4/31"]},
        {"cidr": "10.244.1.8/29"},
        {"cidr": "fd00:244:1::/125", "except": ["fd00:244:1::4/126"]},
        {"cidr": "0.0.0.0/0", "except": ["10.244.1.3/32"]},
    ]
)
peer = st.one_of(
    st.builds(lambda s: {"podSelector": s}, selector),
    st.builds(lambda n: {"namespaceSelector": n}, team_selector),
    st.builds(lambda n, s: {"namespaceSelector": n, "podSelector": s}, team_selector, selector),
    st.builds(lambda b: {"ipBlock": b}, ip_block),
)
port = st.sampled_from(
    [{"port": 80}, {"port": "web"}, {"port": 80, "endPort": 81}, {"port": 81, "protocol": "UDP"}]
)
rule = st.fixed_dictionaries(
    {},
    optional={"peers": st.lists(peer, min_size=1, max_size=2), "ports": st.lists(port, max_size=2)},
)


def _netpol_rule(raw: dict[str, Any], field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "peers" in raw:
        out[field] = raw["peers"]
    if "ports" in raw:
        out["ports"] = raw["ports"]
    return out


@st.composite
def network_policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    types = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    spec: dict[str, Any] = {"podSelector": draw(selector), "policyTypes": types}
    for kind, field in (("Ingress", "from"), ("Egress", "to")):
        if kind in types:
            rules = draw(st.lists(rule, max_size=2))
            spec[kind.lower()] = [_netpol_rule(r, field) for r in rules]
    namespace = draw(st.sampled_from(policy_lab.NAMESPACES))
    meta = {"namespace": namespace, "name": f"np{index}"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
            "spec": spec}  # fmt: skip


@st.composite
def firewall_rule(draw: st.DrawFn) -> dict[str, Any]:
    tier = draw(st.sampled_from(["Admin", "Baseline"]))
    actions = ["Allow", "Deny", "Pass"] if tier == "Admin" else ["Allow", "Deny"]
    entry: dict[str, Any] = {
        "name": "r",
        "action": draw(st.sampled_from(actions)),
        "from": [{"namespaces": draw(team_selector)}],
    }
    if draw(st.booleans()):
        entry["ports"] = [{"portNumber": {"port": 80, "protocol": "TCP"}}]
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": "fw"},
        "spec": {
            "tier": tier,
            "priority": 10,
            "subject": {"namespaces": draw(team_selector)},
            "ingress": [entry],
        },
    }


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=3))
    objects = [draw(network_policy(index)) for index in range(count)]
    if draw(st.booleans()):
        objects.append(draw(firewall_rule()))
    namespaces = {ns: {"team": draw(st.sampled_from(TEAMS))} for ns in policy_lab.NAMESPACES}
    pods = {
        f"{ns}/{name}": {"role": draw(st.sampled_from(ROLES))}
        for ns in policy_lab.NAMESPACES
        for name in policy_lab.PODS
    }
    probe = draw(st.sampled_from(["80/TCP", "81/TCP", "81/UDP"]))
    family = draw(st.sampled_from(FAMILIES))
    return {"objects": objects, "namespaces": namespaces, "pods": pods, "probe": probe,
            "family": family}  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@settings(
    max_examples=PER_BACKEND,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(case=scenario())
def test_kernel_agrees_with_model(
    labs: policy_lab.Labs, backend: str, case: dict[str, Any]
) -> None:
    lab = labs.get(backend)
    docs = lab.documents(namespace_labels=case["namespaces"], pod_labels=case["pods"])
    docs += case["objects"]
    compiled = lab.program(docs)
    assert not compiled.unmatched
    port_text, protocol = case["probe"].split("/")
    kernel = lab.kernel_matrix(port=int(port_text), protocol=protocol, family=case["family"])
    expected = policy_lab.model_matrix(
        docs, port=int(port_text), protocol=protocol, family=case["family"]
    )
    wrong = policy_lab.differences(kernel, expected)
    assert not wrong, (
        f"{case['probe']} {case['family']}: {len(wrong)} pairs differ\n"
        + "\n".join(wrong)
        + f"\nkernel:\n{policy_lab.render_table(kernel)}\nmodel:\n"
        + policy_lab.render_table(expected)
    )
