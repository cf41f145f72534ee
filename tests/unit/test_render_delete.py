"""``render.delete_lines`` and the delete-only path of ``render_restore``."""

from __future__ import annotations

import pytest

from firewall_plugin import model, render


@pytest.mark.parametrize(
    ("have", "want", "expected"),
    [
        (None, [], None),
        (["a", "b"], ["a", "b"], []),
        (["a", "b", "c"], ["b", "c"], ["-D C a"]),
        (["a", "b", "c"], ["a", "c"], ["-D C b"]),
        (["a", "b", "c"], ["a", "b"], ["-D C c"]),
        (["a", "x", "b", "y"], ["a", "b"], ["-D C x", "-D C y"]),
        (["a", "b"], [], ["-D C a", "-D C b"]),
        (["a", "b"], ["b", "a"], None),
        (["a", "b"], ["a", "x"], None),
        (["a", "x", "a"], ["x", "a"], None),
    ],
    ids=[
        "new-chain",
        "unchanged",
        "first-goes",
        "middle-goes",
        "last-goes",
        "several-go",
        "all-go",
        "reordered",
        "inserted",
        "duplicate-to-delete",
    ],
)
def test_delete_lines(have: list[str] | None, want: list[str], expected: list[str] | None) -> None:
    assert render.delete_lines("C", have, want) == expected


def test_render_restore_deletes_instead_of_flushing() -> None:
    replies = model.Rule("RETURN", "podwall: replies")
    gone = model.Rule("PODWALL-E-X", "podwall: egress", source="10.0.0.5")
    kept = model.Rule("PODWALL-E-Y", "podwall: egress", source="10.0.0.6")
    chain = model.Chain("PODWALL-FORWARD", (replies, kept))
    current = {"PODWALL-FORWARD": [render.rule_spec(r) for r in (replies, gone, kept)]}
    text = render.render_restore(
        family="ipv4", replace=[chain], delete=["PODWALL-E-X"], current=current
    )
    assert text.splitlines() == [
        "*filter",
        ":PODWALL-E-X - [0:0]",
        f"-D PODWALL-FORWARD {render.rule_spec(gone)}",
        "-X PODWALL-E-X",
        "COMMIT",
    ]
