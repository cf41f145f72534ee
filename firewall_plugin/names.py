"""Every name and comment podwall writes into the kernel comes from here.

Chains and ipsets are ``PODWALL-<kind>-<hash>`` where ``<hash>`` is base32 of
the sha256 of an identity string, cut so the whole name fits the 28 characters
iptables allows for a chain (ipset allows 31; we keep 28 for both and use the
3 left for the temporary ``-T`` set of an atomic swap).

Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib

PREFIX = "PODWALL"
FORWARD_CHAIN = "PODWALL-FORWARD"
INGRESS_KIND = "I"
EGRESS_KIND = "E"
MAX_NAME = 28
COMMENT_PREFIX = "podwall"
MAX_COMMENT = 240  # UTF-8 bytes; the kernel keeps 255; leave room for quoting
SWAP_SUFFIX = "-T"


def digest(identity: str, length: int) -> str:
    """Return ``length`` upper-case base32 characters of sha256(identity)."""
    raw = hashlib.sha256(identity.encode()).digest()
    return base64.b32encode(raw).decode().rstrip("=")[:length]


def hashed_name(kind: str, identity: str) -> str:
    """Return ``PODWALL-<kind>-<hash>`` of exactly ``MAX_NAME`` characters."""
    head = f"{PREFIX}-{kind}-"
    if len(head) >= MAX_NAME - 8:
        raise ValueError(f"name kind {kind!r} leaves too little room for the hash")
    return head + digest(identity, MAX_NAME - len(head))


def endpoint_id(container_id: str, ifname: str) -> str:
    """The identity of one CNI attachment: container ID and interface name."""
    return f"{container_id}/{ifname}"


def endpoint_hash(container_id: str, ifname: str) -> str:
    """16 base32 characters naming an attachment's chains (never its IP)."""
    return digest(endpoint_id(container_id, ifname), 16)


def ingress_chain(container_id: str, ifname: str) -> str:
    """The per-pod chain that filters traffic *to* the attachment."""
    return f"{PREFIX}-{INGRESS_KIND}-{endpoint_hash(container_id, ifname)}"


def egress_chain(container_id: str, ifname: str) -> str:
    """The per-pod chain that filters traffic *from* the attachment."""
    return f"{PREFIX}-{EGRESS_KIND}-{endpoint_hash(container_id, ifname)}"


def is_podwall_name(name: str) -> bool:
    """True for chain and set names that podwall owns."""
    return name.startswith(PREFIX)


def comment(text: str) -> str:
    """``podwall: <text>`` made safe for iptables comments: quotes, backslashes
    and unprintable characters become spaces, and the result is clamped to
    ``MAX_COMMENT`` UTF-8 bytes (the kernel counts bytes, not characters)."""
    clean = "".join(c if c.isprintable() and c not in "\"\\'" else " " for c in text)
    full = f"{COMMENT_PREFIX}: {clean}".strip() if clean.strip() else COMMENT_PREFIX
    return full.encode()[:MAX_COMMENT].decode(errors="ignore").rstrip()
