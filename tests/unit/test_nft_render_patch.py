"""``nft_render._translated``: a peer set rendered from its last rendering
(only the entries that came and went translated) is the set rendered afresh,
element for element and in the same order, whatever joins and leaves."""

from __future__ import annotations

import random

import pytest

from firewall_operator import nft_render
from firewall_plugin import model
from firewall_plugin.nft import translate


def entries(kind: str, numbers: set[int]) -> tuple[str, ...]:
    if kind == "hash:ip":
        return tuple(sorted(f"10.{n // 250}.{n % 250}.1" for n in numbers))
    return tuple(sorted(f"10.0.{n // 250}.{n % 250 + 1},tcp:{8000 + n % 7}" for n in numbers))


@pytest.mark.parametrize("kind", ["hash:ip", "hash:ip,port"])
def test_a_patched_rendering_is_the_fresh_one(kind: model.IPSetKind) -> None:
    rng = random.Random(7)
    members = set(rng.sample(range(2000), 300))
    ipset = model.IPSet("PODWALL-S", kind, "ipv4", entries(kind, members))
    rendered = translate.peer_set(ipset)
    for _ in range(60):
        leaving = set(rng.sample(sorted(members), rng.randint(0, 5)))
        joining = set(rng.sample(range(2000), rng.randint(0, 5))) - members
        members = (members - leaving) | joining
        after = model.IPSet("PODWALL-S", kind, "ipv4", entries(kind, members))
        deltas: dict[str, nft_render.SetDelta] = {}
        patched = nft_render._translated(after, (ipset, rendered), deltas)
        assert patched == translate.peer_set(after)
        if leaving or joining:
            before, gone, added = deltas["PODWALL-S"]
            assert before is rendered[1]
            assert len(gone) == len(leaving) and len(added) == len(joining)
        ipset, rendered = after, patched


def test_entries_that_do_not_line_up_are_not_patched() -> None:
    element = translate.peer_set(model.IPSet("S", "hash:ip", "ipv4", ("10.0.0.1",)))[1][0]
    assert nft_render._patched([element], ("10.0.0.1",), (), ("10.0.0.9",), []) is None
