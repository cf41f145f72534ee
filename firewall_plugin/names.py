"""Every name and comment podwall writes into the kernel comes from here.

Chains and ipsets are ``PODWALL-<kind>-<hash>`` where ``<hash>`` is base32 of
the sha256 of an identity string, cut so the whole name fits the 28 characters
iptables allows for a chain (ipset allows 31; we keep 28 for both and use the
3 left for the temporary ``-T`` set of an atomic swap).

Pure: no I/O.
"""

from __future__ import annotations

# CPython's own SHA-256 (``_sha256`` up to 3.11, ``_sha2`` from 3.12) before
# hashlib: ``import hashlib`` loads OpenSSL's libcrypto, which costs the CNI
# plugin 3-8 ms of start-up for one 40-byte digest.  Same function, same bytes.
try:
    from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the interpreter build
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256

PREFIX = "PODWALL"
FORWARD_CHAIN = "PODWALL-FORWARD"
INPUT_CHAIN = "PODWALL-INPUT"
#: iptables: the ingress dispatch (by output interface and destination)
TO_CHAIN = "PODWALL-TO"
#: iptables: the built-in chain that jumps (at position 1) to each podwall chain
HOOK_CHAINS = {"FORWARD": FORWARD_CHAIN, "INPUT": INPUT_CHAIN}
INGRESS_KIND = "I"
EGRESS_KIND = "E"
#: iptables: per attachment, what arrives from it in FORWARD / INPUT
FROM_KIND = "F"
NODE_KIND = "N"
MAX_NAME = 28
COMMENT_PREFIX = "podwall"
MAX_COMMENT = 240  # UTF-8 bytes; the kernel keeps 255; leave room for quoting
SWAP_SUFFIX = "-T"
BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648, as base64.b32encode


def short_digest(raw: bytes, length: int = 8) -> bytes:
    """The first ``length`` bytes of sha256(``raw``)."""
    digest_bytes: bytes = sha256(raw).digest()
    return digest_bytes[:length]


def digest(identity: str, length: int) -> str:
    """Return ``length`` upper-case base32 characters of sha256(identity)."""
    raw = sha256(identity.encode()).digest()
    return base32_prefix(raw, length)


#: every pair of base32 characters, by the 10 bits they encode
_PAIRS = [first + second for first in BASE32_ALPHABET for second in BASE32_ALPHABET]


def base32_prefix(raw: bytes, length: int) -> str:
    """The first ``length`` characters of ``base64.b32encode(raw)`` (``length``
    at most ``len(raw) * 8 // 5``), without importing base64 (~1 ms): two
    characters (10 bits) at a time, from only the bytes they need (the agent
    names thousands of chains, comments and log tags a sync)."""
    if not 0 <= length <= len(raw) * 8 // 5:
        raise ValueError(f"cannot take {length} base32 characters of {len(raw)} bytes")
    pairs = (length + 1) // 2
    size = (pairs * 10 + 7) // 8
    bits = size * 8
    number = int.from_bytes(raw[:size].ljust(size, b"\0"), "big")
    text = "".join(_PAIRS[(number >> (bits - 10 * (i + 1))) & 1023] for i in range(pairs))
    return text[:length]


def hashed_name(kind: str, identity: str) -> str:
    """Return ``PODWALL-<kind>-<hash>`` of exactly ``MAX_NAME`` characters."""
    head = f"{PREFIX}-{kind}-"
    if len(head) >= MAX_NAME - 8:
        raise ValueError(f"name kind {kind!r} leaves too little room for the hash")
    return head + digest(identity, MAX_NAME - len(head))


def endpoint_id(container_id: str, ifname: str) -> str:
    """The identity of one CNI attachment: container ID and interface name."""
    return f"{container_id}/{ifname}"


_HASHES: dict[tuple[str, str], str] = {}
_HASHES_KEPT = 4096  # the agent names chains of many pods over its life: bounded


def endpoint_hash(container_id: str, ifname: str) -> str:
    """16 base32 characters naming an attachment's chains (never its IP).
    Remembered: ADD names every record's chains (each four times) on a full node."""
    key = (container_id, ifname)
    found = _HASHES.get(key)
    if found is None:
        if len(_HASHES) >= _HASHES_KEPT:
            _HASHES.clear()
        found = _HASHES[key] = digest(endpoint_id(container_id, ifname), 16)
    return found


def ingress_chain(container_id: str, ifname: str) -> str:
    """The per-pod chain that filters traffic *to* the attachment."""
    return f"{PREFIX}-{INGRESS_KIND}-{endpoint_hash(container_id, ifname)}"


def egress_chain(container_id: str, ifname: str) -> str:
    """The per-pod chain that filters traffic *from* the attachment."""
    return f"{PREFIX}-{EGRESS_KIND}-{endpoint_hash(container_id, ifname)}"


def from_chain(container_id: str, ifname: str) -> str:
    """iptables: checks the source of what the attachment forwards, then
    runs its egress chain and the ingress dispatch."""
    return f"{PREFIX}-{FROM_KIND}-{endpoint_hash(container_id, ifname)}"


def node_chain(container_id: str, ifname: str) -> str:
    """iptables: checks the source of what the attachment sends to its own
    node, then runs its egress chain."""
    return f"{PREFIX}-{NODE_KIND}-{endpoint_hash(container_id, ifname)}"


TIER_LETTERS = {"admin": "A", "netpol": "N", "baseline": "B"}


def tier_chain(key: str, direction: str, tier: str) -> str:
    """``PODWALL-IA-…``/``-IN-``/``-IB-`` (``E`` for egress): the tier chains
    of the attachment whose record key is ``key``."""
    kind = f"{'I' if direction == 'ingress' else 'E'}{TIER_LETTERS[tier]}"
    return hashed_name(kind, f"{key}|{direction}|{tier}")


def tier_chains(key: str) -> list[str]:
    """Every tier chain name an attachment may have."""
    return [
        tier_chain(key, direction, tier)
        for direction in ("ingress", "egress")
        for tier in TIER_LETTERS
    ]


LOG_TAG_PREFIX = "pw:"


def log_tag(direction: str, verdict: str, tier: str, policy: str, rule: str, pod: str) -> str:
    """The tag a logging or counting rule carries (``pw:`` + 10 base32
    characters of a sha256 of the fields): what ``logtags.tag_for`` names."""
    key = "\0".join((direction, verdict, tier, policy, rule, pod))
    return LOG_TAG_PREFIX + digest(key, 10).lower()


def is_podwall_name(name: str) -> bool:
    """True for chain and set names that podwall owns."""
    return name.startswith(PREFIX)


def comment(text: str) -> str:
    """``podwall: <text>`` made safe for iptables comments: quotes, backslashes
    and unprintable characters become spaces, and the result is clamped to
    ``MAX_COMMENT`` UTF-8 bytes (the kernel counts bytes, not characters)."""
    if text.isprintable() and '"' not in text and "'" not in text and "\\" not in text:
        clean = text  # the common case, without a look at every character
    else:
        clean = "".join(c if c.isprintable() and c not in "\"\\'" else " " for c in text)
    full = f"{COMMENT_PREFIX}: {clean}".strip() if clean.strip() else COMMENT_PREFIX
    return full.encode()[:MAX_COMMENT].decode(errors="ignore").rstrip()
