"""Reading only the chains the CNI plugin needs, and what ADD, DEL and CHECK read.

``read_chains`` (one restore of ``-S`` lines) must say what ``read`` says about
FORWARD and the named chains, whichever of them are absent, and change
nothing; ``apply(current=...)`` with such a partial read must reach the same
end state as ``apply`` after a full read; and the plugin's ADD, CHECK and DEL
(with or without a record) must not save the whole table (a wrapper on
PATH logs every iptables tool the plugin starts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import netns
from firewall_plugin import backends, model, names
from firewall_plugin.backends.table import KernelTable
from firewall_plugin.errors import PodwallError
from tests.kernel import _backend_cases as cases
from tests.kernel import plugin_cli as cli

ABSENT = "PODWALL-I-ABSENT"
FORWARD = names.FORWARD_CHAIN
INGRESS, EGRESS = cases.INGRESS, cases.EGRESS


def _call(backend: str, op: str, family: model.Family, kwargs: dict[str, Any]) -> object:
    chosen = backends.get_backend(backend)
    try:
        if op == "read_chains":
            return chosen.read_chains(family, kwargs["chains"])
        if op == "apply_after_reading":  # what the plugin does under its lock
            current = chosen.read_chains(family, kwargs.pop("chains"))
            chosen.apply(family, current=current, **kwargs)
            return None
        raise AssertionError(op)
    except PodwallError as exc:
        return cases.Failure(type(exc).__name__, str(exc))


def _populate(ns: str, backend: str, family: model.Family) -> None:
    """A foreign FORWARD rule, the sample chains with the FORWARD jump, and a
    foreign podwall chain standing for the agent's many."""
    cli.prime(ns)
    cases.make_sample_set(ns, family)
    other = model.Chain("PODWALL-I-OTHER", (model.Rule("DROP", "podwall: other"),))
    cases.apply_ok(ns, backend, family, replace=[*cases.sample_chains(family), other])


def _only(table: KernelTable, chains: list[str]) -> KernelTable:
    kept = {name: specs for name, specs in table.chains.items() if name in chains}
    return KernelTable(chains=kept, hooks=table.hooks)


@pytest.mark.parametrize(
    "chains",
    [
        [],
        [FORWARD],
        [ABSENT],
        [FORWARD, INGRESS, EGRESS],
        [ABSENT, FORWARD, ABSENT + "2", EGRESS],
        [INGRESS, ABSENT, ABSENT + "2"],
    ],
    ids=["forward-only", "one", "absent", "all-present", "absent-between", "absent-last"],
)
@pytest.mark.parametrize("backend", cases.BACKENDS)
def test_read_chains_says_what_read_says_of_those_chains(
    node_ns: str, backend: str, chains: list[str]
) -> None:
    _populate(node_ns, backend, "ipv4")
    got = netns.call(node_ns, _call, backend, "read_chains", "ipv4", {"chains": chains})
    assert got == _only(cases.read(node_ns, backend, "ipv4"), chains)


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_read_chains_of_ipv6_with_absent_chains(node_ns: str, backend: str) -> None:
    _populate(node_ns, backend, "ipv6")
    chains = [ABSENT, FORWARD, INGRESS]
    got = netns.call(node_ns, _call, backend, "read_chains", "ipv6", {"chains": chains})
    assert got == _only(cases.read(node_ns, backend, "ipv6"), chains)


def test_read_chains_creates_no_nft_table(node_ns: str) -> None:
    for family in ("ipv4", "ipv6"):
        got = netns.call(
            node_ns, _call, "iptables-nft", "read_chains", family, {"chains": [ABSENT]}
        )
        assert got == KernelTable(), got
    assert netns.run(node_ns, ["nft", "list", "ruleset"]).stdout.strip() == ""


POD = model.Chain("PODWALL-I-NEWPOD", (model.Rule("DROP", "podwall: new pod"),))
NEW_FORWARD = model.Chain(
    FORWARD,
    (
        model.Rule("RETURN", "podwall: first", source="10.9.0.1"),
        model.Rule(POD.name, "podwall: new pod", destination="10.9.0.2"),
    ),
)
KEPT_FORWARD = model.Chain(FORWARD, NEW_FORWARD.rules[:1])
#: (replace, delete, chains read first) as ADD, ADD again and DEL issue them
WRITES: dict[str, tuple[list[model.Chain], list[str], list[str]]] = {
    "add-new-pod": ([NEW_FORWARD, POD], [], [FORWARD]),
    "add-unlisted-forward": ([NEW_FORWARD, POD], [], []),
    "add-again": ([NEW_FORWARD, POD], [], [FORWARD, POD.name]),
    "del-with-forward": (
        [KEPT_FORWARD],
        [INGRESS, EGRESS, ABSENT],
        [FORWARD, INGRESS, EGRESS, ABSENT],
    ),
    "del-last": ([], [FORWARD, INGRESS, EGRESS, ABSENT], [FORWARD, INGRESS, EGRESS, ABSENT]),
}


@pytest.mark.parametrize("jump_first", [True, False], ids=["jump-first", "jump-second"])
@pytest.mark.parametrize("write", sorted(WRITES))
@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_apply_after_reading_some_chains_ends_as_after_reading_all(
    make_ns: Any, backend: str, write: str, jump_first: bool
) -> None:
    replace, delete, chains = WRITES[write]
    ends = []
    for partial in (False, True):
        ns = make_ns("pwread")
        _populate(ns, backend, "ipv4")
        if not jump_first:  # kube-proxy inserted its rule above podwall's jump
            binary = cases.iptables(backend, "ipv4")
            cases.run(ns, [binary, "-w", "-I", "FORWARD", "1", "-j", "ACCEPT"])
        if partial:
            kwargs = {"replace": replace, "delete": delete, "chains": chains}
            assert netns.call(ns, _call, backend, "apply_after_reading", "ipv4", kwargs) is None
        else:
            cases.apply_ok(ns, backend, "ipv4", replace=replace, delete=delete)
        ends.append(cases.read(ns, backend, "ipv4"))
    assert ends[1] == ends[0]


WRAPPER = """#!/bin/sh
echo "$(basename "$0") $*" >> {log}
exec /usr/sbin/$(basename "$0") "$@"
"""
TOOLS = [
    f"{base}-{variant}{tool}"
    for base in ("iptables", "ip6tables")
    for variant in ("nft", "legacy")
    for tool in ("", "-save", "-restore")
]


def _logging_path(tmp: Path) -> tuple[dict[str, str], Path]:
    """PATH with a folder of wrappers that log each iptables tool run."""
    folder, log = tmp / "bin", tmp / "tools.log"
    folder.mkdir()
    for tool in TOOLS:
        path = folder / tool
        path.write_text(WRAPPER.format(log=log))
        path.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}, log


@pytest.mark.parametrize("backend", ["iptables-nft", "iptables-legacy"])
def test_add_check_del_never_save_the_whole_table(
    node_ns: str, tmp_path: Path, backend: str
) -> None:
    """Only legacy may save, and only where its listing meets an absent
    chain (the first ADD: no dispatch chain yet; a DEL without a record: its
    absent pod chains): legacy then reads the table, as every legacy run does."""
    cli.prime(node_ns)
    env, log = _logging_path(tmp_path)
    first = cli.conf(tmp_path, cli.prev_result(node_ns, "10.22.0.5/24", "fd00:22::5/64"))
    second = cli.conf(tmp_path, cli.prev_result(node_ns, "10.22.0.6/24", "fd00:22::6/64"))
    runs = [
        ("ADD", "c1", first),
        ("ADD", "c2", second),
        ("ADD", "c2", second),  # again
        ("CHECK", "c2", second),
        ("DEL", "c1", first),
        ("DEL no record", "c1", first),
        ("DEL", "c2", second),
    ]
    saved = {}
    for verb, container, config in runs:
        log.write_text("")
        config = {**config, "backend": backend}
        out = cli.invoke(node_ns, verb.split()[0], config, container_id=container, env=env)
        assert out.status == 0, (verb, container, out.output, out.stderr)
        ran = log.read_text().splitlines()
        assert ran, verb  # the wrappers did run
        saved[f"{verb} {container}"] = [line for line in ran if "-save" in line]
    allowed = {"ADD c1", "DEL no record c1"} if backend == "iptables-legacy" else set()
    assert {run: lines for run, lines in saved.items() if lines and run not in allowed} == {}
    assert cli.podwall_lines(node_ns) == []
