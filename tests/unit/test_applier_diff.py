"""The applier's pure planning: which chains and sets a write must touch."""

from __future__ import annotations

import pytest

from firewall_operator import diff
from firewall_plugin import model, names, render

RET = model.Rule("RETURN", "podwall: a")
DROP = model.Rule("DROP", "podwall: b")
SET_RULE = model.Rule(
    "RETURN", "podwall: c", matches=(model.Match("set", (("match-set", "PODWALL-S-X src"),)),)
)


def chains(**spec: tuple[model.Rule, ...]) -> dict[str, model.Chain]:
    return {f"PODWALL-{key}": model.Chain(f"PODWALL-{key}", rules) for key, rules in spec.items()}


def specs(chain: dict[str, model.Chain]) -> dict[str, diff.KnownChain]:
    return {name: diff.chain_specs(value, "ipv4") for name, value in chain.items()}


@pytest.mark.parametrize(
    ("desired", "known", "replace", "delete"),
    [
        (chains(A=(RET,)), {}, ["PODWALL-A"], []),
        (chains(A=(RET,)), chains(A=(RET,)), [], []),
        (chains(A=(RET,)), specs(chains(A=(RET,))), [], []),
        (chains(A=(RET,)), chains(A=(DROP,)), ["PODWALL-A"], []),
        (chains(A=(RET,)), specs(chains(A=(RET, DROP))), ["PODWALL-A"], []),
        (chains(A=(RET,)), chains(A=(RET,), B=(DROP,)), [], ["PODWALL-B"]),
        ({}, specs(chains(A=(), B=(DROP,))), [], ["PODWALL-A", "PODWALL-B"]),
        (chains(A=(RET,), B=(DROP,)), chains(A=(RET,), B=(RET,)), ["PODWALL-B"], []),
    ],
    ids=[
        "new",
        "same-model",
        "same-kernel-specs",
        "changed-model",
        "changed-kernel-specs",
        "stale",
        "all-stale",
        "only-changed-one",
    ],
)
def test_plan_chains(
    desired: dict[str, model.Chain],
    known: dict[str, diff.KnownChain],
    replace: list[str],
    delete: list[str],
) -> None:
    plan = diff.plan_chains(family="ipv4", desired=desired, known=known)
    assert [chain.name for chain in plan.replace] == replace
    assert list(plan.delete) == delete


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.0.5/32", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.5"),
        ("10.1.0.0/16", "10.1.0.0/16"),
        ("10.1.2.0/24  nomatch", "10.1.2.0/24 nomatch"),
        ("2001:db8:0:0::5/128", "2001:db8::5"),
        ("2001:db8:0:0::5,tcp:8080", "2001:db8::5,tcp:8080"),
        ("2001:0db8::/64 nomatch", "2001:db8::/64 nomatch"),
    ],
    ids=["v4-host", "v4-bare", "v4-net", "nomatch", "v6-host", "v6-port", "v6-nomatch"],
)
def test_normalize_entry(entry: str, expected: str) -> None:
    assert diff.normalize_entry(entry) == expected


SAVE = """\
create PODWALL-S-A hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1
add PODWALL-S-A 10.1.0.0/16
add PODWALL-S-A 10.1.2.0/24 nomatch
add PODWALL-S-A 10.0.0.5
create PODWALL-S-B hash:ip,port family inet6 hashsize 1024 maxelem 65536 bucketsize 12 initval 0x2
add PODWALL-S-B 2001:db8::5,tcp:8080
create PODWALL-S-C hash:ip family inet hashsize 1024 maxelem 1048576 counters initval 0x3
create OTHER hash:ip family inet hashsize 1024 maxelem 65536
add OTHER 10.9.9.9
"""


def test_parse_ipset_save() -> None:
    sets = diff.parse_ipset_save(SAVE)
    assert sorted(sets) == ["PODWALL-S-A", "PODWALL-S-B", "PODWALL-S-C"]
    a = sets["PODWALL-S-A"]
    assert (a.kind, a.family, a.standard) == ("hash:net", "ipv4", True)
    assert a.entries == {"10.1.0.0/16", "10.1.2.0/24 nomatch", "10.0.0.5"}
    assert sets["PODWALL-S-B"].family == "ipv6"
    assert not sets["PODWALL-S-B"].standard, "maxelem differs from what podwall creates"
    assert not sets["PODWALL-S-C"].standard, "counters extension"


def ipset(name: str, kind: model.IPSetKind, *entries: str) -> model.IPSet:
    return model.IPSet(name, kind, "ipv4", tuple(sorted(entries)))


KERNEL = diff.parse_ipset_save(SAVE)


@pytest.mark.parametrize(
    ("desired", "known", "replace", "destroy", "recreate"),
    [
        ([ipset("PODWALL-S-A", "hash:net", "10.0.0.5/32", "10.1.0.0/16", "10.1.2.0/24 nomatch")],
         {"PODWALL-S-A": KERNEL["PODWALL-S-A"]}, [], [], []),
        ([ipset("PODWALL-S-A", "hash:net", "10.0.0.6/32")],
         {"PODWALL-S-A": KERNEL["PODWALL-S-A"]}, ["PODWALL-S-A"], [], []),
        ([ipset("PODWALL-S-A", "hash:ip", "10.0.0.5")],
         {"PODWALL-S-A": KERNEL["PODWALL-S-A"]}, ["PODWALL-S-A"], [], ["PODWALL-S-A"]),
        ([ipset("PODWALL-S-C", "hash:ip")],
         {"PODWALL-S-C": KERNEL["PODWALL-S-C"]}, ["PODWALL-S-C"], [], []),
        ([], dict(KERNEL), [], sorted(KERNEL), []),
        ([ipset("PODWALL-S-N", "hash:ip", "10.0.0.1")], {}, ["PODWALL-S-N"], [], []),
        ([ipset("PODWALL-S-N", "hash:ip", "10.0.0.1")],
         {"PODWALL-S-N": ipset("PODWALL-S-N", "hash:ip", "10.0.0.1")}, [], [], []),
    ],
    ids=["kernel-same", "kernel-changed", "kernel-other-kind", "kernel-extension",
         "stale", "new", "memory-same"],
)  # fmt: skip
def test_plan_sets(
    desired: list[model.IPSet],
    known: dict[str, diff.KnownSet],
    replace: list[str],
    destroy: list[str],
    recreate: list[str],
) -> None:
    plan = diff.plan_sets(desired={s.name: s for s in desired}, known=known)
    assert [s.name for s in plan.replace] == replace
    assert list(plan.destroy) == destroy
    assert list(plan.recreate) == recreate


def test_references() -> None:
    chain = model.Chain("PODWALL-I-X", (RET, SET_RULE))
    assert diff.references(chain, ["PODWALL-S-X"], "ipv4")
    assert diff.references(diff.chain_specs(chain, "ipv4"), ["PODWALL-S-X"], "ipv4")
    assert not diff.references(chain, ["PODWALL-S-Y"], "ipv4")


JUMP = render.hook_jump_spec("FORWARD")
INPUT_JUMP = render.hook_jump_spec("INPUT")


@pytest.mark.parametrize(
    ("forward", "ok"),
    [
        ([JUMP], True),
        ([JUMP, "-j ACCEPT"], True),
        (["-j KUBE-FORWARD", JUMP], False),
        ([JUMP, JUMP], False),
        ([], False),
        ([f"-j {names.FORWARD_CHAIN}"], False),
        ([f"-m comment --comment x -j {names.FORWARD_CHAIN}", JUMP], False),
    ],
    ids=["alone", "first", "second", "doubled", "missing", "foreign-spelling", "stale-copy"],
)
def test_hooks_in_place(forward: list[str], ok: bool) -> None:
    assert diff.hooks_in_place({"FORWARD": forward}, ["FORWARD"]) is ok
    hooks = {"FORWARD": forward, "INPUT": [INPUT_JUMP]}
    assert diff.hooks_in_place(hooks, ["FORWARD", "INPUT"]) is ok
    assert not diff.hooks_in_place({"FORWARD": forward, "INPUT": []}, ["FORWARD", "INPUT"])


BIG = ipset("PODWALL-S-B", "hash:ip", *(f"10.0.0.{i}" for i in range(1, 11)))


@pytest.mark.parametrize(
    ("desired", "add", "remove"),
    [
        (ipset(BIG.name, "hash:ip", *BIG.entries[1:], "10.0.0.99"), ["10.0.0.99"], ["10.0.0.1"]),
        (ipset(BIG.name, "hash:ip", *BIG.entries[:-1]), [], ["10.0.0.9"]),
    ],
    ids=["one-moved", "one-gone"],
)  # fmt: skip
def test_small_changes_to_known_sets_are_deltas(
    desired: model.IPSet, add: list[str], remove: list[str]
) -> None:
    plan = diff.plan_sets(desired={desired.name: desired}, known={BIG.name: BIG})
    assert plan.replace == ()
    assert [(d.name, list(d.add), list(d.remove)) for d in plan.update] == [(BIG.name, add, remove)]
    assert plan.entries == len(add) + len(remove)


@pytest.mark.parametrize(
    "desired",
    [
        ipset("PODWALL-S-B", "hash:ip", "10.9.9.9"),
        ipset("PODWALL-S-B", "hash:net", *BIG.entries),
    ],
    ids=["mostly-new", "other-kind"],
)
def test_large_or_incompatible_changes_refill(desired: model.IPSet) -> None:
    plan = diff.plan_sets(desired={desired.name: desired}, known={BIG.name: BIG})
    assert [s.name for s in plan.replace] == [BIG.name]
    assert plan.update == ()


def test_kernel_known_sets_are_refilled_not_patched() -> None:
    wanted = ipset("PODWALL-S-A", "hash:net", "10.0.0.5/32", "10.1.0.0/16", "10.1.3.0/24 nomatch")
    plan = diff.plan_sets(desired={wanted.name: wanted}, known=dict(KERNEL))
    assert [s.name for s in plan.replace] == ["PODWALL-S-A"]


def test_render_set_updates_removes_then_adds() -> None:
    text = diff.render_set_updates(
        [diff.SetDelta("PODWALL-S-X", add=("10.1.2.0/24",), remove=("10.1.2.0/24 nomatch",))]
    )
    assert text == "del PODWALL-S-X 10.1.2.0/24 -exist\nadd PODWALL-S-X 10.1.2.0/24 -exist\n"
