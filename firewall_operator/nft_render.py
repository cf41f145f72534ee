"""The desired state of a node in nftables' terms, for ``nft_applier``.

``render(desired, endpoints, cache)`` turns the compiler's model (chains and
peer sets per family) and the node's endpoints into ``Desired``: policy
chains by nft name, peer sets translated to nft elements, identity elements,
and which record owns which main chain.  ``EncodedChain`` is one chain's
rules encoded as ``add rule`` messages with their digests.

What is derived once and reused (all pure, so a reuse is the same bytes):
a peer set equal to the one translated last time under its name (``cache``;
of a changed hash set only its new entries are translated), an endpoint's
identity items and main chain names (memoized by endpoint), and, through
``nft.translate``, every distinct rule and hash set member.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from firewall_operator import kernel_sets
from firewall_plugin import model, names
from firewall_plugin.nft import layout, translate
from firewall_plugin.nft import objects as obj

#: an nft chain of the desired state: (family, model chain)
ChainEntry = tuple[model.Family, model.Chain]


@dataclass(slots=True)
class Desired:
    """The desired kernel state in nft's terms."""

    chains: dict[str, ChainEntry] = field(default_factory=dict)
    sets: dict[str, tuple[obj.SetSpec, list[obj.Element]]] = field(default_factory=dict)
    items: set[layout.Item] = field(default_factory=set)
    #: how a hash set differs from its last rendering: (the elements it was
    #: rendered from, the elements gone, the elements new)
    deltas: dict[str, SetDelta] = field(default_factory=dict)
    #: the main policy chains (nft names) of each record key
    owners: dict[str, str] = field(default_factory=dict)


#: (elements before, elements gone, elements added) of a changed hash set
SetDelta = tuple[list[obj.Element], list[obj.Element], list[obj.Element]]

#: a peer set's last translation, by name: (the model set, its nft form)
SetCache = dict[str, tuple[model.IPSet, tuple[obj.SetSpec, list[obj.Element]]]]


def render(
    desired: Mapping[model.Family, model.FamilyState],
    endpoints_: Sequence[model.Endpoint],
    cache: SetCache | None = None,
) -> Desired:
    """The model rendered as nft objects.  With ``cache``, a peer set equal to
    the one translated last time under its name is not translated again (the
    agent's compiler hands unchanged sets over as the same objects), and the
    cache keeps only the sets of this state."""
    out = Desired()
    kept: SetCache = {}
    for family, state in desired.items():
        for chain in state.chains.values():
            out.chains[layout.chain_name(chain.name, family)] = (family, chain)
        for ipset in state.sets.values():
            hit = (cache or {}).get(ipset.name)
            if hit is not None and (hit[0] is ipset or hit[0] == ipset):
                kept[ipset.name] = hit
            else:
                kept[ipset.name] = (ipset, _translated(ipset, hit, out.deltas))
            out.sets[ipset.name] = kept[ipset.name][1]
    if cache is not None:
        cache.clear()
        cache.update(kept)
    for endpoint in endpoints_:
        items, owned = _endpoint_parts(endpoint)
        out.items.update(items)
        for name in owned:
            out.owners[name] = endpoint.key
    return out


#: what ``render`` derives from an endpoint (a pure function of it, the same
#: every sync while the pod lives): its identity items and its main policy
#: chains; bounded, emptied when full
_ENDPOINT_PARTS: dict[model.Endpoint, tuple[list[layout.Item], list[str]]] = {}
ENDPOINT_PARTS_LIMIT = 4096


def _endpoint_parts(endpoint: model.Endpoint) -> tuple[list[layout.Item], list[str]]:
    """(identity items, nft names of the main policy chains) of ``endpoint``."""
    parts = _ENDPOINT_PARTS.get(endpoint)
    if parts is None:
        owned: list[str] = []
        for family in model.FAMILIES:
            owned.extend(
                layout.chain_name(name, family)
                for name in (
                    names.ingress_chain(endpoint.container_id, endpoint.ifname),
                    names.egress_chain(endpoint.container_id, endpoint.ifname),
                )
            )
        if len(_ENDPOINT_PARTS) >= ENDPOINT_PARTS_LIMIT:
            _ENDPOINT_PARTS.clear()
        parts = _ENDPOINT_PARTS[endpoint] = (layout.endpoint_items(endpoint), owned)
    return parts


def _translated(
    ipset: model.IPSet,
    before: tuple[model.IPSet, tuple[obj.SetSpec, list[obj.Element]]] | None,
    deltas: dict[str, SetDelta],
) -> tuple[obj.SetSpec, list[obj.Element]]:
    """``translate.peer_set(ipset)``; for a hash set that had other entries
    before, only the entries that came and went are translated, and
    ``deltas`` records the change, so a pod joining or leaving a big set
    costs about its own entry.  The elements stay in entry order (one per
    entry; entries are sorted): the gone ones are deleted and the new ones
    inserted at their places found by bisection, list operations in C
    rather than a pass over every element in Python."""
    if (
        before is None
        or ipset.kind == "hash:net"
        or before[0].kind != ipset.kind
        or before[0].family != ipset.family
    ):
        return translate.peer_set(ipset)
    old_set, (spec, old_elements) = before
    if len(old_elements) != len(old_set.entries):
        return translate.peer_set(ipset)
    move = kernel_sets.moved(ipset)
    if move is not None and move[0] is old_set:
        gone, new = move[1], move[2]  # the compiler patched it: it knows the change
    else:
        gone = tuple(sorted(set(old_set.entries).difference(ipset.entries)))
        new = tuple(sorted(set(ipset.entries).difference(old_set.entries)))
    _, removed = translate.peer_set(model.IPSet(ipset.name, ipset.kind, ipset.family, gone))
    _, added = translate.peer_set(model.IPSet(ipset.name, ipset.kind, ipset.family, new))
    if len(removed) != len(gone) or len(added) != len(new):
        return translate.peer_set(ipset)
    pairs = list(zip(new, added, strict=True))
    elements = _patched(old_elements, old_set.entries, ipset.entries, gone, pairs)
    if elements is None:
        return translate.peer_set(ipset)
    deltas[ipset.name] = (old_elements, removed, added)
    return spec, elements


def _patched(
    old_elements: list[obj.Element],
    old_entries: tuple[str, ...],
    entries: tuple[str, ...],
    gone: tuple[str, ...],
    new: list[tuple[str, obj.Element]],
) -> list[obj.Element] | None:
    """``old_elements`` (one per ``old_entries``, in order) without those of
    ``gone`` and with ``new`` in place: one per ``entries``; None when the
    entries do not line up (then the caller translates the whole set)."""
    elements = list(old_elements)
    for entry in reversed(gone):  # from the end: the places before stay right
        at = bisect.bisect_left(old_entries, entry)
        if at == len(old_entries) or old_entries[at] != entry:
            return None
        del elements[at]
    for entry, element in new:  # ascending: the smaller ones are in place already
        elements.insert(bisect.bisect_left(entries, entry), element)
    return elements if len(elements) == len(entries) else None


class EncodedChain:
    """A chain's rules encoded once: the ``add rule`` message bodies and the
    digests their user data carry (what ``verify`` compares)."""

    __slots__ = ("bodies", "chain", "digests", "family")

    def __init__(self, name: str, family: model.Family, chain: model.Chain) -> None:
        self.family, self.chain = family, chain
        head = obj.rule_head(layout.TABLE, name)
        self.bodies: list[bytes] = []
        self.digests: list[bytes] = []
        for rule in chain.rules:
            expressions, digest = _expressions(rule, family)
            self.digests.append(digest)
            self.bodies.append(head + expressions + _user_data(rule.comment, digest))

    def holds(self, family: model.Family, chain: model.Chain) -> bool:
        """Whether this is the encoding of ``chain`` in ``family``."""
        return self.family == family and (self.chain is chain or self.chain == chain)


#: (``NFTA_RULE_EXPRESSIONS`` attribute, digest) by the expressions'
#: bytes, and rules' user data by (comment, digest): pods' chains repeat the
#: same rules (the bench workload's 8,573 rules are 2,019 distinct ones under
#: ~1,000 distinct comments); bounded, emptied when full
_BODIES: dict[bytes, tuple[bytes, bytes]] = {}
_USER_DATA: dict[tuple[str, bytes], bytes] = {}
BODIES_LIMIT = 1 << 15


def _expressions(rule: model.Rule, family: model.Family) -> tuple[bytes, bytes]:
    """(the expressions attribute, the digest) of ``rule`` in ``family``."""
    expressions = translate.rule(rule, family)
    found = _BODIES.get(expressions)
    if found is None:
        if len(_BODIES) >= BODIES_LIMIT:
            _BODIES.clear()
        digest = layout.rule_digest(expressions)
        found = _BODIES[expressions] = (obj.rule_expressions(expressions), digest)
    return found


def _user_data(comment: str, digest: bytes) -> bytes:
    """The ``NFTA_RULE_USERDATA`` attribute: the comment and the digest."""
    key = (comment, digest)
    found = _USER_DATA.get(key)
    if found is None:
        if len(_USER_DATA) >= BODIES_LIMIT:
            _USER_DATA.clear()
        found = _USER_DATA[key] = obj.rule_user_data(comment, digest)
    return found
