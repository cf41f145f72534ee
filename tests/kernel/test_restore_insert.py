"""The restore backends insert rules into a chain instead of flushing it when
nothing has to go (no nf_tables grace period on ADD), with the same end state."""

from __future__ import annotations

import pytest

from firewall_plugin import model
from tests.kernel import _backend_cases as cases

RESTORE_BACKENDS = ["iptables-nft", "iptables-legacy"]


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
