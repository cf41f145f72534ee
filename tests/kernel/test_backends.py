"""Every backend against the real kernel, each test in a fresh node namespace.

The same desired chains must read back as the rendered specs from all three
backends; replace/delete/remove_all, the FORWARD jump's position, atomicity on
bad rules and concurrent writers are checked the same way for each.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from firewall_lab import netns
from firewall_plugin import backends, model, names, render
from firewall_plugin.backends import iptc_backend, iptc_loader, restore
from tests.kernel import _backend_cases as cases
from tests.kernel._backend_cases import BACKENDS, FAMILIES, Failure

JUMP = render.hook_jump_spec("FORWARD")


@pytest.fixture(scope="module", autouse=True)
def _preload_iptc() -> None:
    """Import python-iptables once, so every forked child inherits it."""
    iptc_loader.load()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_reads_back_rendered_specs(node_ns: str, backend: str, family: model.Family) -> None:
    cases.make_sample_set(node_ns, family)
    chains = cases.sample_chains(family)
    cases.apply_ok(node_ns, backend, family, replace=chains)
    table = cases.read(node_ns, backend, family)
    assert table.chains == cases.expected(chains, family)
    assert table.forward == [JUMP]


@pytest.mark.parametrize("backend", BACKENDS)
def test_replacing_a_chain_flushes_and_refills_it(node_ns: str, backend: str) -> None:
    first = model.Chain("PODWALL-X", tuple(model.Rule("DROP", f"podwall: {i}") for i in range(5)))
    other = model.Chain("PODWALL-Y", (model.Rule("RETURN", "podwall: y"),))
    cases.apply_ok(node_ns, backend, "ipv4", replace=[first, other])
    second = model.Chain("PODWALL-X", (model.Rule("RETURN", "podwall: new", protocol="tcp"),))
    cases.apply_ok(node_ns, backend, "ipv4", replace=[second])
    table = cases.read(node_ns, backend, "ipv4")
    assert table.chains == cases.expected([second, other], "ipv4")
    assert table.forward == []  # no PODWALL-FORWARD, no jump


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_removes_chains_and_ignores_unknown_names(node_ns: str, backend: str) -> None:
    chains = [model.Chain(f"PODWALL-D{i}", (model.Rule("DROP", "podwall: d"),)) for i in range(3)]
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    cases.apply_ok(node_ns, backend, "ipv4", replace=[], delete=["PODWALL-D0", "PODWALL-NOPE"])
    assert sorted(cases.read(node_ns, backend, "ipv4").chains) == ["PODWALL-D1", "PODWALL-D2"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_delete_with_rewritten_references_in_one_call(node_ns: str, backend: str) -> None:
    chains = cases.sample_chains("ipv4")
    cases.make_sample_set(node_ns, "ipv4")
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    forward = model.Chain(names.FORWARD_CHAIN, chains[0].rules[:1])
    cases.apply_ok(
        node_ns, backend, "ipv4", replace=[forward], delete=[cases.INGRESS, cases.EGRESS]
    )
    assert cases.read(node_ns, backend, "ipv4").chains == cases.expected([forward], "ipv4")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_jump_moves_back_to_rule_1_and_is_never_doubled(
    node_ns: str, backend: str, family: model.Family
) -> None:
    forward = model.Chain(names.FORWARD_CHAIN, (model.Rule("RETURN", "podwall: f"),))
    cases.apply_ok(node_ns, backend, family, replace=[forward])
    tool = cases.iptables(backend, family)
    kube = ["-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"]
    cases.run(node_ns, [tool, "-w", "-N", "KUBE-FORWARD"])
    cases.run(node_ns, [tool, "-w", "-I", "FORWARD", "1", *kube])  # like kube-proxy
    cases.run(node_ns, [tool, "-w", "-A", "FORWARD", "-m", "comment", "--comment",
                        render.HOOK_JUMP_COMMENT, "-j", names.FORWARD_CHAIN])  # fmt: skip
    cases.apply_ok(node_ns, backend, family, replace=[forward])
    table = cases.read(node_ns, backend, family)
    kube_spec = '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'
    assert table.forward == [JUMP, kube_spec]
    assert cases.in_ns(node_ns, backend, "read_hooks", family) == table.hooks


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_with_known_chains_reaches_what_reading_does(
    node_ns: str, backend: str, family: model.Family
) -> None:
    """``existing`` (the caller knows which podwall chains exist): a deleted
    name that is absent is no error, and a FORWARD jump that moved is put back."""
    cases.make_sample_set(node_ns, family)
    chains = cases.sample_chains(family)
    cases.apply_ok(node_ns, backend, family, replace=chains)
    tool = cases.iptables(backend, family)
    cases.run(node_ns, [tool, "-w", "-I", "FORWARD", "1", "-j", "ACCEPT"])
    forward = model.Chain(names.FORWARD_CHAIN, chains[0].rules[:1])
    existing = {chain.name for chain in chains}
    delete = [cases.INGRESS, cases.EGRESS, "PODWALL-I-ABSENT"]
    cases.apply_ok(node_ns, backend, family, replace=[forward], delete=delete, existing=existing)
    table = cases.read(node_ns, backend, family)
    assert table.chains == cases.expected([forward], family)
    assert table.forward == [JUMP, "-j ACCEPT"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_twice_is_idempotent(node_ns: str, backend: str) -> None:
    cases.make_sample_set(node_ns, "ipv4")
    chains = cases.sample_chains("ipv4")
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    once = cases.read(node_ns, backend, "ipv4")
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    assert cases.read(node_ns, backend, "ipv4") == once


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_remove_all_leaves_no_chain_and_no_jump(
    node_ns: str, backend: str, family: model.Family
) -> None:
    cases.make_sample_set(node_ns, family)
    cases.apply_ok(node_ns, backend, family, replace=cases.sample_chains(family))
    assert cases.in_ns(node_ns, backend, "remove_all", family) is None
    table = cases.read(node_ns, backend, family)
    assert (table.chains, table.forward) == ({}, [])
    saved = cases.run(node_ns, [f"{cases.iptables(backend, family)}-save"])
    assert "PODWALL" not in saved
    assert cases.in_ns(node_ns, backend, "remove_all", family) is None  # nothing left: fine


def _bad(rule: model.Rule) -> model.Chain:
    return model.Chain("PODWALL-BAD", (model.Rule("RETURN", "podwall: ok"), rule))


BAD_RULES = {
    "unknown-match": model.Rule("DROP", "podwall: x", matches=(model.Match("nosuchmatch"),)),
    "bad-option-value": model.Rule(
        "DROP", "podwall: x", matches=(model.Match("conntrack", (("ctstate", "BOGUS"),)),)
    ),
    "missing-ipset": model.Rule(
        "DROP", "podwall: x", matches=(model.Match("set", (("match-set", "PODWALL-NONE src"),)),)
    ),
    "undeclared-target-chain": model.Rule("PODWALL-NOWHERE", "podwall: x"),
    "reject-tcp-reset-without-tcp": model.Rule(
        "REJECT", "podwall: x", target_options=(("reject-with", "tcp-reset"),)
    ),
}


@pytest.mark.parametrize("bad", BAD_RULES.values(), ids=BAD_RULES.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_rule_raises_and_leaves_previous_state(
    node_ns: str, backend: str, bad: model.Rule
) -> None:
    cases.make_sample_set(node_ns, "ipv4")
    chains = cases.sample_chains("ipv4")
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    before = cases.read(node_ns, backend, "ipv4")
    changed = model.Chain(cases.EGRESS, (model.Rule("DROP", "podwall: changed"),))
    result = cases.in_ns(
        node_ns, backend, "apply", "ipv4", replace=[changed, _bad(bad)], delete=[cases.INGRESS]
    )
    assert isinstance(result, Failure) and result.kind == "BackendError", result
    assert cases.read(node_ns, backend, "ipv4") == before


def _add_own_chain(backend: str, index: int) -> object:
    rules = tuple(model.Rule("DROP", f"podwall: {index} {n}") for n in range(5))
    for round_ in range(3):
        chain = model.Chain(f"PODWALL-C{index:02d}-{round_}", rules)
        result = cases._op(backend, "apply", "ipv4", {"replace": [chain]})
        if result is not None:
            return result
    return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_writers_lose_nothing(node_ns: str, backend: str) -> None:
    writers = 20
    results = cases.spawn_all(node_ns, lambda i: _add_own_chain(backend, i), writers)
    assert results == [None] * writers
    chains = cases.read(node_ns, backend, "ipv4").chains
    wanted = {f"PODWALL-C{i:02d}-{r}" for i in range(writers) for r in range(3)}
    assert set(chains) == wanted
    assert all(len(rules) == 5 for rules in chains.values())


def _apply_with_foreign_writer() -> tuple[int, list[str], list[str]]:
    calls: list[int] = []

    def before_commit() -> None:
        calls.append(1)
        if len(calls) == 1:
            cases.foreign_forward_writer()  # changes the rule count under us

    backend = iptc_backend.IptcBackend(before_commit=before_commit)
    forward = model.Chain(names.FORWARD_CHAIN, (model.Rule("RETURN", "podwall: f"),))
    backend.apply("ipv4", replace=[forward])
    table = backend.read("ipv4")
    return len(calls), table.forward, sorted(table.chains)


def test_iptc_retries_a_commit_that_lost_a_race(node_ns: str) -> None:
    attempts, forward, chains = netns.call(node_ns, _apply_with_foreign_writer)
    assert attempts == 2
    assert forward == [JUMP, "-m comment --comment foreign -j ACCEPT"]
    assert chains == [names.FORWARD_CHAIN]


@pytest.mark.parametrize("family", FAMILIES)
def test_backends_read_the_same_for_the_same_chains(make_ns: object, family: model.Family) -> None:
    tables = {}
    for backend in BACKENDS:
        ns = make_ns("pwnode")  # type: ignore[operator]
        cases.make_sample_set(ns, family)
        cases.apply_ok(ns, backend, family, replace=cases.sample_chains(family))
        tables[backend] = cases.read(ns, backend, family)
    assert tables["iptables-nft"] == tables["iptables-legacy"] == tables["iptc"]


KUBE_SETUP = {
    "empty": ([], "iptables-nft"),
    "legacy-kube-chains": (["iptables-legacy -N KUBE-SERVICES",
                            "iptables-legacy -A FORWARD -j KUBE-SERVICES"], "iptables-legacy"),
    "nft-kube-chains": (["iptables-nft -N KUBE-SERVICES",
                         "iptables-nft -A FORWARD -j KUBE-SERVICES"], "iptables-nft"),
    "nft-kube-beats-more-legacy-rules": (
        ["iptables-nft -N KUBE-FORWARD"] + ["iptables-legacy -A INPUT -j ACCEPT"] * 3,
        "iptables-nft",
    ),
    "legacy-rules-only": (["iptables-legacy -A INPUT -j ACCEPT"], "iptables-legacy"),
}  # fmt: skip


@pytest.mark.parametrize(("commands", "variant"), KUBE_SETUP.values(), ids=KUBE_SETUP.keys())
def test_auto_detects_the_variant_the_node_uses(
    node_ns: str, commands: list[str], variant: str
) -> None:
    for command in commands:
        cases.run(node_ns, command.split())
    assert netns.call(node_ns, restore.detect_variant) == variant
    # auto prefers podwall's own nftables tables wherever the kernel runs them
    assert netns.call(node_ns, backends.detect) == backends.NFTABLES


def test_iptc_environment_points_at_the_real_files() -> None:
    environ: dict[str, str] = {"IPTABLES_LIBDIR": "/mine"}
    iptc_loader.prepare_environment(environ)
    assert environ["IPTABLES_LIBDIR"] == "/mine"  # the user's value wins
    assert environ["SETUPTOOLS_USE_DISTUTILS"] == "stdlib"
    major = environ["PYTHON_IPTABLES_XTABLES_VERSION"]
    libdir = os.path.dirname(environ["XTABLES_LIBDIR"])
    assert os.path.exists(os.path.join(libdir, f"libxtables.so.{major}"))
    assert os.path.exists(os.path.join(environ["XTABLES_LIBDIR"], "libxt_comment.so"))


LAZY = """
import sys
from firewall_plugin.backends import get_backend, iptc_backend
get_backend("iptables-nft"), get_backend("iptc")
assert "iptc" not in sys.modules, "iptc imported before first use"
from firewall_plugin.backends import iptc_loader
iptc_loader.load()
assert "iptc" in sys.modules
"""


def test_iptc_is_imported_only_on_first_use() -> None:
    subprocess.run([sys.executable, "-c", LAZY], check=True, capture_output=True, timeout=60)
