"""``render.insert_lines`` and the insert-only path of ``render_restore``."""

from __future__ import annotations

import pytest

from firewall_plugin import model, render


@pytest.mark.parametrize(
    ("have", "want", "expected"),
    [
        (None, ["a"], None),
        ([], [], []),
        ([], ["a", "b"], ["-I C 1 a", "-I C 2 b"]),
        (["a", "c"], ["a", "c"], []),
        (["a", "c"], ["a", "b", "c", "d"], ["-I C 2 b", "-I C 4 d"]),
        (["b"], ["a", "b", "b"], ["-I C 1 a", "-I C 3 b"]),
        (["a", "b"], ["b", "a"], None),
        (["a", "x"], ["a", "b"], None),
        (["a", "b", "c"], ["a", "c"], None),
    ],
    ids=[
        "new-chain",
        "both-empty",
        "empty-chain",
        "unchanged",
        "inserts-in-the-middle-and-end",
        "duplicates",
        "reordered",
        "replaced",
        "shrunk",
    ],
)
def test_insert_lines(have: list[str] | None, want: list[str], expected: list[str] | None) -> None:
    assert render.insert_lines("C", have, want) == expected


def test_render_restore_inserts_instead_of_flushing() -> None:
    rule = model.Rule("RETURN", "podwall: replies")
    added = model.Rule("PODWALL-E-X", "podwall: egress", source="10.0.0.5")
    chain = model.Chain("PODWALL-FORWARD", (rule, added))
    current = {"PODWALL-FORWARD": [render.rule_spec(rule)]}
    text = render.render_restore(family="ipv4", replace=[chain], current=current)
    assert text.splitlines() == [
        "*filter",
        f"-I PODWALL-FORWARD 2 {render.rule_spec(added)}",
        "COMMIT",
    ]
    flushed = render.render_restore(family="ipv4", replace=[chain])
    assert ":PODWALL-FORWARD - [0:0]" in flushed.splitlines()
