"""names: every kernel name fits, is deterministic, and comments are safe."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firewall_plugin import names, render

CHAIN_NAMES: dict[str, Callable[[str, str], str]] = {
    "ingress": names.ingress_chain,
    "egress": names.egress_chain,
    "hashed-set": lambda c, i: names.hashed_name("S", f"{c}/{i}"),
    "hashed-long-kind": lambda c, i: names.hashed_name("POLICY", f"{c}/{i}"),
}


@pytest.mark.parametrize("make", CHAIN_NAMES.values(), ids=CHAIN_NAMES.keys())
@given(container=st.text(min_size=1, max_size=80), ifname=st.text(min_size=1, max_size=15))
def test_names_fit_and_are_deterministic(
    make: Callable[[str, str], str], container: str, ifname: str
) -> None:
    name = make(container, ifname)
    assert len(name) <= names.MAX_NAME
    assert len(render.temp_name(name)) <= 31  # ipset's limit for the swap set
    assert names.is_podwall_name(name)
    assert name == make(container, ifname)
    assert all((c.isalnum() and c.isascii()) or c == "-" for c in name)


def test_hashed_name_is_exactly_max_length() -> None:
    assert len(names.hashed_name("S", "x")) == names.MAX_NAME


def test_chains_of_one_attachment_share_the_hash_and_differ_by_kind() -> None:
    ingress, egress = names.ingress_chain("abc", "eth0"), names.egress_chain("abc", "eth0")
    assert ingress.startswith("PODWALL-I-") and egress.startswith("PODWALL-E-")
    assert ingress[len("PODWALL-I-") :] == egress[len("PODWALL-E-") :]


IDENTITIES = {
    "other-container": (("abc", "eth0"), ("abd", "eth0")),
    "other-interface": (("abc", "eth0"), ("abc", "eth1")),
    "split-elsewhere": (("abc", "eth0"), ("abce", "th0")),
}


@pytest.mark.parametrize(("one", "other"), IDENTITIES.values(), ids=IDENTITIES.keys())
def test_different_attachments_get_different_chains(
    one: tuple[str, str], other: tuple[str, str]
) -> None:
    assert names.ingress_chain(*one) != names.ingress_chain(*other)


def test_hashed_name_refuses_kinds_that_leave_no_room() -> None:
    with pytest.raises(ValueError):
        names.hashed_name("A-VERY-LONG-KIND-NAME", "x")


COMMENTS = {
    "plain": ("egress x/a", "podwall: egress x/a"),
    "empty": ("", "podwall"),
    "only-blanks": ("   ", "podwall"),
    "double-quote": ('say "hi"', "podwall: say  hi"),
    "single-quote-backslash": ("it's a\\b", "podwall: it s a b"),
    "newline-tab": ("a\nb\tc", "podwall: a b c"),
}


@pytest.mark.parametrize(("text", "wanted"), COMMENTS.values(), ids=COMMENTS.keys())
def test_comment_sanitises(text: str, wanted: str) -> None:
    assert names.comment(text) == wanted


CLAMPED = {
    "ascii": "x" * 1000,
    "two-byte": "é" * 1000,
    "three-byte": "漢" * 1000,
    "four-byte": "🙂" * 1000,
}


@pytest.mark.parametrize("text", CLAMPED.values(), ids=CLAMPED.keys())
def test_comment_is_clamped_in_bytes_without_splitting_a_character(text: str) -> None:
    clamped = names.comment(text)
    assert len(clamped.encode()) <= names.MAX_COMMENT
    assert len(clamped.encode()) > names.MAX_COMMENT - 4  # as long as it may be
    assert clamped.startswith("podwall: ")


@given(st.text(max_size=400))
def test_any_comment_is_safe(text: str) -> None:
    clamped = names.comment(text)
    assert clamped.startswith(names.COMMENT_PREFIX)
    assert len(clamped.encode()) <= names.MAX_COMMENT
    assert clamped.isprintable()
    assert not set("\"'\\") & set(clamped)
    assert clamped == clamped.strip()
