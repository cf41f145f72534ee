"""SIG Network's cluster policy API (``policy.networking.k8s.io``) as ``fwrule.FirewallRule``.

One model, one planner, one compiler: each upstream object becomes the same
typed ``FirewallRule`` a podwall FirewallRule becomes, with ``kind`` and
``rank`` set, so tiers, priorities and actions mean exactly the same thing.

* ``ClusterNetworkPolicy`` v1alpha2 (network-policy-api v0.2.0): ``tier``
  Admin|Baseline, ``priority`` 0-1000, ``subject``, at most 25 ``ingress`` and
  ``egress`` rules with ``action`` Accept|Deny|Pass (Accept is podwall's
  Allow), peers ``namespaces``, ``pods`` (``namespaceSelector`` optional) and,
  for egress, ``networks``, ``nodes`` and ``domainNames``; ``protocols``:
  ``tcp``/``udp``/``sctp`` with an optional ``destinationPort`` (``number`` or
  ``range`` with start < end), or ``destinationNamedPort``.
* ``AdminNetworkPolicy`` v1alpha1 (v0.1.8): the Admin tier, ``priority``,
  actions Allow|Deny|Pass, ``ports`` in FirewallRule's form, at most 100 rules.
* ``BaselineAdminNetworkPolicy`` v1alpha1: the single object named
  ``default`` (any other is ignored, as the API server would refuse it);
  Baseline tier with no priority: it runs after every other Baseline policy
  (``BANP_PRIORITY``); actions Allow|Deny.

Precedence at the same tier and priority: FirewallRule, then
ClusterNetworkPolicy, then AdminNetworkPolicy (``rank``), then by name.

Fail closed as the API prescribes for a peer podwall cannot enforce
(``domainNames``; a peer with no field podwall knows, as a newer CRD may send):
an Accept/Allow rule matches no traffic, a Deny or Pass rule becomes "deny
all" for its direction.  ``protocols`` entries podwall does not know are
treated the same way.  Each such rule is reported as a warning problem (the
object's status condition says why).  Anything else the schema forbids (a bad
selector, CIDR, port, action, tier, priority) makes the whole object invalid:
like a FirewallRule, its subject pods are isolated in the directions it
declares, and without a usable subject it is ignored.

Pure: no I/O; never raises on bad content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from firewall_operator import cidrs, fwrule, selectors
from firewall_operator.fwrule import Entry, FirewallRule, Peer, Port, RuleError
from firewall_operator.netpol import PORT_NAME, Direction
from firewall_operator.problems import Problem

GROUP = "policy.networking.k8s.io"
BANP_NAME = "default"
BANP_PRIORITY = 1001  # after every Baseline policy that has a priority (0-1000)
PROTOCOL_FIELDS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


@dataclass(frozen=True, slots=True)
class Flavor:
    """What differs between the three kinds."""

    kind: str
    version: str
    plural: str
    rank: int
    actions: Mapping[str, fwrule.Action]  # the kind's words → podwall's actions
    max_rules: int
    max_peers: int
    ports_field: str  # "protocols" (v1alpha2) or "ports" (v1alpha1)
    tier: fwrule.Tier | None = None  # None: from spec.tier
    priority: int | None = None  # None: from spec.priority

    @property
    def api_version(self) -> str:
        return f"{GROUP}/{self.version}"


CNP = Flavor(
    "ClusterNetworkPolicy",
    "v1alpha2",
    "clusternetworkpolicies",
    1,
    {"Accept": "Allow", "Deny": "Deny", "Pass": "Pass"},
    25,
    25,
    "protocols",
)
ANP = Flavor(
    "AdminNetworkPolicy",
    "v1alpha1",
    "adminnetworkpolicies",
    2,
    {"Allow": "Allow", "Deny": "Deny", "Pass": "Pass"},
    100,
    100,
    "ports",
    tier="Admin",
)
BANP = Flavor(
    "BaselineAdminNetworkPolicy",
    "v1alpha1",
    "baselineadminnetworkpolicies",
    3,
    {"Allow": "Allow", "Deny": "Deny"},
    100,
    100,
    "ports",
    tier="Baseline",
    priority=BANP_PRIORITY,
)
KINDS: dict[str, Flavor] = {flavor.kind: flavor for flavor in (CNP, ANP, BANP)}
KNOWN_PEERS: dict[Direction, tuple[str, ...]] = {
    "ingress": ("namespaces", "pods"),
    "egress": ("namespaces", "pods", "networks", "nodes"),
}


class Unsupported(Exception):
    """A part of one rule podwall cannot enforce: the rule fails closed."""


def _present(raw: Mapping[str, Any]) -> list[str]:
    return [str(key) for key, value in raw.items() if value is not None]


def _peer(raw: object, direction: Direction, where: str, flavor: Flavor) -> Peer:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    present = _present(raw)
    known = [field for field in present if field in KNOWN_PEERS[direction]]
    if len(known) > 1:
        raise RuleError(f"{where}: needs exactly one of {', '.join(KNOWN_PEERS[direction])}")
    if present == ["domainNames"] and direction == "egress":
        raise Unsupported(f"{where}: domainNames peers are not supported by podwall")
    if len(present) != 1 or not known:
        fields = ", ".join(present) or "none"
        raise Unsupported(f"{where}: a peer with no field podwall knows (fields: {fields})")
    optional = flavor is CNP
    return fwrule.peer_of(known[0], raw[known[0]], where, namespaces_optional=optional)


def _number(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise RuleError(f"{where}: {raw!r} is not a port number 1-65535")
    return raw


def _protocol(raw: object, where: str) -> Port:
    """One ``protocols`` entry of a ClusterNetworkPolicy rule."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    present = _present(raw)
    fields = (*PROTOCOL_FIELDS, "destinationNamedPort")
    known = [field for field in present if field in fields]
    if len(known) > 1:
        raise RuleError(f"{where}: needs exactly one of {', '.join(fields)}")
    if len(present) != 1 or not known:
        names = ", ".join(present) or "none"
        raise Unsupported(f"{where}: a protocol podwall does not know (fields: {names})")
    field, value = known[0], raw[known[0]]
    if field == "destinationNamedPort":
        if not isinstance(value, str) or not PORT_NAME.match(value):
            raise RuleError(f"{where}.destinationNamedPort: {value!r} is not a valid port name")
        return Port(name=value)
    protocol = PROTOCOL_FIELDS[field]
    if not isinstance(value, Mapping):
        raise RuleError(f"{where}.{field}: expected a mapping")
    port = value.get("destinationPort")
    if port is None:
        return Port(protocol, 1, 65535)
    where = f"{where}.{field}.destinationPort"
    if not isinstance(port, Mapping) or len(_present(port)) != 1:
        raise RuleError(f"{where}: needs exactly one of number, range")
    if port.get("number") is not None:
        number = _number(port["number"], f"{where}.number")
        return Port(protocol, number, number)
    span = port.get("range")
    if not isinstance(span, Mapping):
        raise RuleError(f"{where}: needs exactly one of number, range")
    start = _number(span.get("start"), f"{where}.range.start")
    end = _number(span.get("end"), f"{where}.range.end")
    if start >= end:
        raise RuleError(f"{where}.range: start {start} must be less than end {end}")
    return Port(protocol, start, end)


def _ports(raw: object, where: str, flavor: Flavor) -> tuple[Port, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 1 <= len(raw) <= flavor.max_peers:
        raise RuleError(f"{where}: needs a list of 1-{flavor.max_peers} entries")
    if flavor.ports_field == "protocols":
        return tuple(_protocol(item, f"{where}[{i}]") for i, item in enumerate(raw))
    return tuple(fwrule.parse_port(item, f"{where}[{i}]") for i, item in enumerate(raw))


def _entry(
    raw: object, direction: Direction, where: str, flavor: Flavor, number: int
) -> tuple[Entry | None, str]:
    """The rule as podwall enforces it (None: it matches nothing) and, when it
    fails closed, why."""
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    name = raw.get("name") or f"#{number}"
    if not isinstance(name, str) or len(name) > 100:
        raise RuleError(f"{where}.name: at most 100 characters")
    word = raw.get("action")
    if word not in flavor.actions:
        raise RuleError(f"{where}.action: {word!r} is not {' or '.join(flavor.actions)}")
    action = flavor.actions[str(word)]
    field = "from" if direction == "ingress" else "to"
    peers = raw.get(field)
    if not isinstance(peers, list) or not 1 <= len(peers) <= flavor.max_peers:
        raise RuleError(f"{where}.{field}: needs 1-{flavor.max_peers} peers")
    try:
        parsed = tuple(
            _peer(p, direction, f"{where}.{field}[{i}]", flavor) for i, p in enumerate(peers)
        )
        ports = _ports(raw.get(flavor.ports_field), f"{where}.{flavor.ports_field}", flavor)
    except Unsupported as why:
        if action == "Allow":
            return None, f"{why}: the {word} rule {name!r} matches nothing (fail closed)"
        denied = Entry(name=name, action="Deny")
        return denied, f"{why}: the {word} rule {name!r} denies all {direction} (fail closed)"
    return Entry(name=name, action=action, peers=parsed, ports=ports), ""


def _entries(
    spec: Mapping[str, Any], direction: Direction, flavor: Flavor
) -> tuple[tuple[Entry, ...], list[str]]:
    raw = spec.get(direction)
    if raw is None:
        return (), []
    if not isinstance(raw, list) or len(raw) > flavor.max_rules:
        raise RuleError(f"spec.{direction}: needs a list of at most {flavor.max_rules} rules")
    entries: list[Entry] = []
    notes: list[str] = []
    for number, item in enumerate(raw):
        entry, note = _entry(item, direction, f"spec.{direction}[{number}]", flavor, number)
        if entry is not None:
            entries.append(entry)
        if note:
            notes.append(note)
    return tuple(entries), notes


def _head(spec: Mapping[str, Any], flavor: Flavor) -> tuple[fwrule.Tier, int]:
    tier = flavor.tier or spec.get("tier")
    if tier not in ("Admin", "Baseline"):
        raise RuleError(f"spec.tier: {tier!r} is not Admin or Baseline")
    if flavor.priority is not None:
        return tier, flavor.priority
    priority = spec.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise RuleError(f"spec.priority: {priority!r} is not an integer 0-1000")
    return tier, priority


def parse(doc: Mapping[str, Any], kind: str | None = None) -> FirewallRule:
    """The typed policy of one upstream object: ``kind`` (default: the
    object's own, which must be in ``KINDS``; list items may lack it)."""
    flavor = KINDS[kind or str(doc.get("kind"))]
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    generation = meta.get("generation")
    rule = FirewallRule(
        name=str(meta.get("name") or ""),
        kind=flavor.kind,
        rank=flavor.rank,
        generation=generation if isinstance(generation, int) else 0,
    )
    if flavor is BANP and rule.name != BANP_NAME:
        reason = f"only the {flavor.kind} named {BANP_NAME!r} takes effect; ignored"
        return replace(rule, problems=(Problem(flavor.kind, "", rule.name, reason),))
    declared = frozenset(d for d in ("ingress", "egress") if spec.get(d) is not None)
    isolate: frozenset[Direction] = declared or frozenset({"ingress", "egress"})  # type: ignore[assignment]
    try:
        subject = fwrule.parse_subject(spec.get("subject"), namespaces_optional=flavor is CNP)
        rule = replace(rule, subject=subject)
        tier, priority = _head(spec, flavor)
        ingress, notes = _entries(spec, "ingress", flavor)
        egress, more = _entries(spec, "egress", flavor)
    except (RuleError, selectors.SelectorError, cidrs.CIDRError) as exc:
        reason = f"{exc}; failing closed" if rule.subject else f"{exc}; ignored (no subject)"
        problem = Problem(flavor.kind, "", rule.name, reason)
        return replace(rule, problems=(problem,), isolate=isolate if rule.subject else frozenset())
    warnings = tuple(Problem(flavor.kind, "", rule.name, n, "warning") for n in notes + more)
    return replace(
        rule, tier=tier, priority=priority, ingress=ingress, egress=egress, problems=warnings
    )
