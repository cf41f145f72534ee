"""Shortcuts of the restore backends, each with the end state of the plain path.

Rules are inserted into a chain instead of flushing it when nothing has to go
(no nf_tables grace period on ADD); ``assume_jump`` skips reading the table
first (DEL) and falls back to reading when the kernel refuses; ``existing``
(the agent knows which podwall chains exist) reads only FORWARD, and a kernel
that disagrees refuses the restore, changing nothing.
"""

from __future__ import annotations

import shlex

import pytest

from firewall_plugin import model, names, render
from tests.kernel import _backend_cases as cases

RESTORE_BACKENDS = ["iptables-nft", "iptables-legacy"]
JUMP = render.hook_jump_spec("FORWARD")


def _chain(*notes: str) -> model.Chain:
    return model.Chain(
        "PODWALL-FORWARD",
        tuple(model.Rule("RETURN", f"podwall: {note}", source="10.0.0.9") for note in notes),
    )


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (("a", "c"), ("a", "b", "c", "d")),
        ((), ("a", "b")),
        (("a", "b"), ("b", "a")),
        (("a", "b", "c"), ("a", "c")),
    ],
    ids=["inserts", "into-empty", "reordered-flushes", "shrunk-flushes"],
)
@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_replace_reaches_the_same_rules(
    node_ns: str, backend: str, before: tuple[str, ...], after: tuple[str, ...]
) -> None:
    cases.apply_ok(node_ns, backend, "ipv4", replace=[_chain(*before)])
    cases.apply_ok(node_ns, backend, "ipv4", replace=[_chain(*after)])
    table = cases.read(node_ns, backend, "ipv4")
    assert table.chains == cases.expected([_chain(*after)], "ipv4")


FORWARD_RULES = (model.Rule("RETURN", "podwall: replies"),)
POD = model.Chain("PODWALL-I-POD", (model.Rule("DROP", "podwall: pod"),))


def _setup(ns: str, backend: str, *, jumps: int) -> None:
    """PODWALL-FORWARD, a pod chain, and ``jumps`` FORWARD jumps to it."""
    forward = model.Chain(names.FORWARD_CHAIN, FORWARD_RULES)
    cases.apply_ok(ns, backend, "ipv4", replace=[forward, POD])
    binary = f"iptables-{backend.removeprefix('iptables-')}"
    if jumps == 0:
        cases.run(ns, [binary, "-w", "-D", "FORWARD", *shlex.split(JUMP)])
    for _ in range(jumps - 1):
        cases.run(ns, [binary, "-w", "-A", "FORWARD", *shlex.split(JUMP)])


@pytest.mark.parametrize("jumps", [1, 0, 2], ids=["as-assumed", "jump-missing", "jump-doubled"])
@pytest.mark.parametrize("keep_forward", [True, False], ids=["pods-left", "last-pod"])
@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_assume_jump_reaches_what_reading_first_does(
    node_ns: str, backend: str, keep_forward: bool, jumps: int
) -> None:
    """``assume_jump`` skips the read; when the kernel disagrees (a jump
    missing: the INPUT one is, here; or doubled while PODWALL-FORWARD goes)
    the restore is refused and the backend reads and applies as usual."""
    _setup(node_ns, backend, jumps=jumps)
    forward = model.Chain(names.FORWARD_CHAIN, FORWARD_RULES[:1])
    replace = [forward] if keep_forward else []
    delete = [POD.name] if keep_forward else [POD.name, names.FORWARD_CHAIN]
    cases.apply_ok(node_ns, backend, "ipv4", replace=replace, delete=delete, assume_jump=True)
    table = cases.read(node_ns, backend, "ipv4")
    assert table.chains == cases.expected(replace, "ipv4")
    assert table.forward == ([JUMP] if keep_forward else [])


CHANGED = model.Chain(POD.name, (model.Rule("RETURN", "podwall: changed"),))
KNOWN = frozenset({names.FORWARD_CHAIN, POD.name})
FORWARD = model.Chain(names.FORWARD_CHAIN, FORWARD_RULES)
# setup jumps, existing, replace, delete, chains after, FORWARD after
EXISTING_CASES = {
    "as-known": (1, KNOWN, [CHANGED], [], [FORWARD, CHANGED], [JUMP]),
    "delete-known-and-absent": (1, KNOWN, [FORWARD], [POD.name, "PODWALL-I-NOPE"], [FORWARD],
                                [JUMP]),
    "forward-unknown-but-jumped": (1, frozenset(), [CHANGED], [], [FORWARD, CHANGED], [JUMP]),
    "last-pod": (1, KNOWN, [], [POD.name, names.FORWARD_CHAIN], [], []),
    "jump-missing": (0, KNOWN, [CHANGED], [], [FORWARD, CHANGED], [JUMP]),
    "jump-doubled": (2, KNOWN, [CHANGED], [], [FORWARD, CHANGED], [JUMP]),
    "foreign-rule-first": (-1, KNOWN, [CHANGED], [], [FORWARD, CHANGED], [JUMP, "-j ACCEPT"]),
}  # fmt: skip


@pytest.mark.parametrize(
    ("jumps", "existing", "replace", "delete", "chains", "forward"),
    EXISTING_CASES.values(),
    ids=EXISTING_CASES.keys(),
)
@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_existing_reaches_what_reading_first_does(
    node_ns: str,
    backend: str,
    jumps: int,
    existing: frozenset[str],
    replace: list[model.Chain],
    delete: list[str],
    chains: list[model.Chain],
    forward: list[str],
) -> None:
    _setup(node_ns, backend, jumps=max(jumps, 1))
    if jumps < 0:  # another component put its rule first
        cases.run(node_ns, [cases.iptables(backend, "ipv4"), "-w", "-I", "FORWARD", "1", "-j",
                            "ACCEPT"])  # fmt: skip
    elif jumps == 0:
        cases.run(node_ns, [cases.iptables(backend, "ipv4"), "-w", "-D", "FORWARD",
                            *shlex.split(JUMP)])  # fmt: skip
    cases.apply_ok(node_ns, backend, "ipv4", replace=replace, delete=delete, existing=existing)
    table = cases.read(node_ns, backend, "ipv4")
    assert table.chains == cases.expected(chains, "ipv4")
    assert table.forward == forward


@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_existing_that_the_kernel_contradicts_is_refused(node_ns: str, backend: str) -> None:
    """The caller believes PODWALL-FORWARD exists, but it is gone: the restore
    would jump to a missing chain, so the kernel refuses it and nothing changes
    (the agent then reads the table and tries again)."""
    cases.apply_ok(node_ns, backend, "ipv4", replace=[POD])
    before = cases.read(node_ns, backend, "ipv4")
    result = cases.in_ns(node_ns, backend, "apply", "ipv4", replace=[CHANGED], existing=KNOWN)
    assert isinstance(result, cases.Failure) and result.kind == "BackendError", result
    assert cases.read(node_ns, backend, "ipv4") == before
