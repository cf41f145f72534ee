"""``names.digest`` without hashlib/base64 gives what they would give."""

from __future__ import annotations

import base64
import hashlib

import pytest

from firewall_plugin import names


@pytest.mark.parametrize(
    "identity",
    ["", "c2/eth0", "a" * 300, "ünïcode/net1", "0123456789abcdef" * 4 + "/eth0"],
    ids=["empty", "short", "long", "non-ascii", "container-id"],
)
@pytest.mark.parametrize("length", [0, 1, 16, 20, 51])
def test_digest_matches_hashlib_and_base64(identity: str, length: int) -> None:
    raw = hashlib.sha256(identity.encode()).digest()
    assert names.digest(identity, length) == base64.b32encode(raw).decode()[:length]


def test_base32_prefix_refuses_more_than_the_bytes_hold() -> None:
    with pytest.raises(ValueError, match="cannot take 52"):
        names.base32_prefix(bytes(32), 52)


def test_known_chain_name() -> None:
    # a name already in kernels of running nodes: it must never change
    assert names.ingress_chain("c2", "eth0") == "PODWALL-I-GXQHMEMB6FCBL4NX"


def test_base32_prefix_of_short_inputs_matches_base64() -> None:
    # every length of every input of 1 to 10 bytes: the zero-padded tail too
    for size in range(1, 11):
        raw = bytes(range(200, 200 - size, -1))
        for length in range(size * 8 // 5 + 1):
            assert names.base32_prefix(raw, length) == base64.b32encode(raw).decode()[:length]


@pytest.mark.parametrize("text", ['say "hi"', "it's", "back\\slash", "tab\there", "plain ns/pod"])
def test_a_comment_has_no_quotes_backslashes_or_unprintables(text: str) -> None:
    made = names.comment(text)
    assert made.startswith("podwall: ")
    assert not any(c in made for c in "\"'\\\t")
    assert (
        made.split(": ", 1)[1].split()
        == "".join(" " if c in "\"'\\\t" else c for c in text).split()
    )
