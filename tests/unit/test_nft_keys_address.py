"""``nft.keys.address`` (set keys of every pod address the agent writes)
accepts and packs exactly what ``addresses.packed`` does: a fast path must
not widen what podwall takes for an address (IPv4 inside IPv6 text, mapped
addresses, zone ids, leading zeros all stay refused)."""

from __future__ import annotations

import random

import pytest

from firewall_plugin import addresses
from firewall_plugin.nft import keys

ODD = [
    "1.2.3.4", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "0.0.0.0", "::", "::1",
    "FD00::1", "fd00::1", "::ffff:1.2.3.4", "::ffff:102:304", "1::2::3", "fe80::1%eth0",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", " 1.2.3.4",
    "1.2.3.4 ", "0x1.2.3.4", "1.2.3.04", "", ":", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "00000::1", "1.2.3.-4", "+1.2.3.4", "10.0.0.0/8", "fd00::/64", "1.2.3.4/33", "\u0661.2.3.4",
]  # fmt: skip


def packed_or_error(function: object, text: str) -> str:
    try:
        return function(text).hex()  # type: ignore[operator, no-any-return]
    except ValueError:
        return "ValueError"


@pytest.mark.parametrize("text", ODD)
def test_the_same_answer_as_addresses_packed(text: str) -> None:
    head = text.split("/", 1)[0]
    assert packed_or_error(keys.address, text) == packed_or_error(addresses.packed, head)


def test_random_addresses_pack_alike() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        if rng.random() < 0.5:
            text = ".".join(str(rng.randrange(256)) for _ in range(4))
        else:
            groups = [f"{rng.randrange(1 << 16):x}" for _ in range(8)]
            start = rng.randrange(8)
            text = ":".join(groups)
            if rng.random() < 0.5:
                text = ":".join(groups[:start]) + "::" + ":".join(groups[start + 2 :])
        assert packed_or_error(keys.address, text) == packed_or_error(addresses.packed, text), text
