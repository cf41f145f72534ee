"""``addresses``: ``ipaddress``'s results and errors without importing it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firewall_plugin import addresses


def _interface(text: str) -> str:
    return str(ipaddress.ip_interface(text))


def _network(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


PAIRS: list[tuple[Callable[[str], str], Callable[[str], str]]] = [
    (addresses.interface, _interface),
    (addresses.network, _network),
]


def _outcome(function: Callable[[str], str], text: str) -> str:
    try:
        return function(text)
    except ValueError as exc:
        return f"ValueError {type(exc).__name__}"


TEXTS = [
    "10.1.2.3/16", "10.0.0.5", "0.0.0.0/0", "255.255.255.255/32", "1.2.3.4/024",
    "fd00:77::5/64", "FD00::5/64", "fd00:0:0:0:0:0:0:5/64", "::", "::/0", "::1", "1::",
    "1:0:0:1:0:0:0:1", "1:0:0:1:0:0:1:1", "0:0:1:0:0:1:0:0", "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8/128",
    # handed to ipaddress: other forms, and everything invalid
    "1.2.3.4/255.255.0.0", "1.2.3.4/0.0.255.255", "::ffff:1.2.3.4", "::ffff:102:304/96",
    "fe80::1%eth0/64", "", "/", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.256", "1.2.3.4/",
    "1.2.3.4/33", " 1.2.3.4", ":1::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "12345::",
    "g::", "\u0661.\u0662.\u0663.\u0664", "1.2.3.4/\u0662", "10.0.0.1/1/2", "1.2.3.4/+8",
]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS, ids=lambda text: repr(text))
@pytest.mark.parametrize("pair", PAIRS, ids=["interface", "network"])
def test_same_as_ipaddress(
    pair: tuple[Callable[[str], str], Callable[[str], str]], text: str
) -> None:
    ours, theirs = pair
    assert _outcome(ours, text) == _outcome(theirs, text)


def _spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    if address.version == 4:
        return [str(address)]
    full = address.exploded
    return [
        address.compressed,
        full,
        full.upper(),
        ":".join(g.lstrip("0") or "0" for g in full.split(":")),
    ]


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=130)),
)
def test_random_addresses_same_as_ipaddress(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int | None
) -> None:
    for spelling in _spellings(address):
        text = spelling if prefix is None else f"{spelling}/{prefix}"
        for ours, theirs in PAIRS:
            assert _outcome(ours, text) == _outcome(theirs, text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("::ffff:a17:9/128", "an IPv4-mapped IPv6 address"),
        ("::/64", "the unspecified address"),
        ("10.1.2.3/24", ""),
        ("fd00::5/64", ""),
    ],
)
def test_not_a_pod_address(text: str, why: str) -> None:
    assert addresses.not_a_pod_address(text) == why
