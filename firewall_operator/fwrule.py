"""FirewallRule (podwall.io/v1alpha1, cluster-scoped) parsed and validated.

Modelled on SIG Network's AdminNetworkPolicy / BaselineAdminNetworkPolicy:
``tier`` Admin|Baseline, ``priority`` 0-1000 (lower first, ties by name),
``subject`` exactly one of ``namespaces`` (a namespace selector) or ``pods``
(``namespaceSelector`` + ``podSelector``), ordered named ``ingress``/``egress``
rules with ``action`` Allow|Deny|Pass, ``log``, peers (``namespaces``, ``pods``,
``networks``, and for egress ``nodes``) and ``ports`` (``portNumber``,
``portRange``, ``namedPort``).

``FirewallRule`` is also the typed form of the upstream cluster policies
(``upstream``: ClusterNetworkPolicy, AdminNetworkPolicy,
BaselineAdminNetworkPolicy): ``kind`` says which object it came from and
``rank`` orders kinds at equal priority (``order``), so the planner and the
compiler treat them all alike.  A ``nodes`` peer holds a node selector; the
planner resolves it to the selected Nodes' addresses.

The CRD schema and CEL rules reject most bad objects; this validator repeats
those checks for objects that bypassed them (YAML files, old API servers).  A
rule with problems keeps its subject (when that parses) and loses its rules;
its subject pods are isolated in the NetworkPolicy tier for the directions it
declares (fail closed).  A rule whose subject cannot be parsed affects nothing.

Pure: no I/O; never raises on bad content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from firewall_operator import cidrs, selectors
from firewall_operator.netpol import PORT_NAME, PROTOCOLS, Direction
from firewall_operator.problems import Problem

KIND = "FirewallRule"
Tier = Literal["Admin", "Baseline"]
Action = Literal["Allow", "Deny", "Pass"]
MAX_RULES = 100
MAX_PEERS = 100
MAX_NAME = 100


class RuleError(ValueError):
    """One reason a FirewallRule is invalid."""


@dataclass(frozen=True, slots=True)
class Subject:
    """Pods in namespaces matching ``namespace_selector`` (and ``pod_selector``)."""

    namespace_selector: selectors.Selector
    pod_selector: selectors.Selector | None = None


@dataclass(frozen=True, slots=True)
class Peer:
    """``node_selector`` set: the Nodes it selects (``networks`` then holds
    their addresses once the planner resolved them); else ``networks``
    non-empty: a network peer; else pods like ``Subject``."""

    namespace_selector: selectors.Selector | None = None
    pod_selector: selectors.Selector | None = None
    networks: tuple[cidrs.Network, ...] = ()
    node_selector: selectors.Selector | None = None


@dataclass(frozen=True, slots=True)
class Port:
    """A port range of one protocol, or ``name`` (a named container port,
    protocol taken from the container port)."""

    protocol: str | None = None
    start: int = 0
    end: int = 0
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    action: Action
    log: bool = False
    peers: tuple[Peer, ...] = ()
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True, slots=True)
class FirewallRule:
    """One tiered cluster policy.  ``problems`` of severity error make it fail
    closed (``isolate``); warnings (rules that fail closed one by one, see
    ``upstream``) leave the rest in force."""

    name: str
    kind: str = KIND
    rank: int = 0
    tier: Tier = "Admin"
    priority: int = 1000
    subject: Subject | None = None
    ingress: tuple[Entry, ...] = ()
    egress: tuple[Entry, ...] = ()
    generation: int = 0
    problems: tuple[Problem, ...] = ()
    isolate: frozenset[Direction] = frozenset()

    @property
    def valid(self) -> bool:
        return not any(problem.severity == "error" for problem in self.problems)

    @property
    def order(self) -> tuple[int, int, str]:
        """Evaluation order within a tier: priority, then kind (``rank``:
        FirewallRule before the upstream kinds), then name."""
        return (self.priority, self.rank, self.name)

    @property
    def key(self) -> str:
        """``name`` for a FirewallRule, ``Kind/name`` for the other kinds."""
        return self.name if self.kind == KIND else f"{self.kind}/{self.name}"

    def entries(self, direction: Direction) -> tuple[Entry, ...]:
        return self.ingress if direction == "ingress" else self.egress


def _one_of(raw: object, fields: tuple[str, ...], where: str) -> tuple[str, Any]:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    present = [f for f in fields if raw.get(f) is not None]
    if len(present) != 1 or len(raw) != 1:
        raise RuleError(f"{where}: needs exactly one of {', '.join(fields)}")
    return present[0], raw[present[0]]


def pods_selectors(
    raw: object, where: str, *, namespaces_optional: bool = False
) -> tuple[selectors.Selector, selectors.Selector]:
    """``{namespaceSelector, podSelector}`` (both required unless told)."""
    if not isinstance(raw, Mapping) or "podSelector" not in raw:
        raise RuleError(f"{where}: needs namespaceSelector and podSelector")
    if "namespaceSelector" not in raw and not namespaces_optional:
        raise RuleError(f"{where}: needs namespaceSelector and podSelector")
    return (
        selectors.parse(raw.get("namespaceSelector"), where=f"{where}.namespaceSelector"),
        selectors.parse(raw["podSelector"], where=f"{where}.podSelector"),
    )


def parse_subject(raw: object, *, namespaces_optional: bool = False) -> Subject:
    field, value = _one_of(raw, ("namespaces", "pods"), "spec.subject")
    if field == "namespaces":
        return Subject(selectors.parse(value, where="spec.subject.namespaces"))
    where = "spec.subject.pods"
    return Subject(*pods_selectors(value, where, namespaces_optional=namespaces_optional))


def networks_peer(value: object, where: str) -> Peer:
    """``networks``: 1-25 CIDRs (duplicates dropped)."""
    if not isinstance(value, list) or not 1 <= len(value) <= 25:
        raise RuleError(f"{where}: needs 1-25 CIDRs")
    nets = tuple(cidrs.parse(text, f"{where}[{i}]") for i, text in enumerate(value))
    return Peer(networks=tuple(dict.fromkeys(nets)))


def peer_of(field: str, value: object, where: str, *, namespaces_optional: bool = False) -> Peer:
    """The peer of one known peer field (``namespaces``, ``pods``,
    ``networks`` or ``nodes``); ``where`` names the peer."""
    where = f"{where}.{field}"
    if field == "namespaces":
        return Peer(namespace_selector=selectors.parse(value, where=where))
    if field == "pods":
        return Peer(*pods_selectors(value, where, namespaces_optional=namespaces_optional))
    if field == "nodes":
        return Peer(node_selector=selectors.parse(value, where=where))
    return networks_peer(value, where)


PEER_FIELDS: dict[Direction, tuple[str, ...]] = {
    "ingress": ("namespaces", "pods", "networks"),
    "egress": ("namespaces", "pods", "networks", "nodes"),
}


def _peer(raw: object, direction: Direction, where: str) -> Peer:
    field, value = _one_of(raw, PEER_FIELDS[direction], where)
    return peer_of(field, value, where)


def _number(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise RuleError(f"{where}: {raw!r} is not a port number 1-65535")
    return raw


def _protocol(raw: Mapping[str, Any], where: str) -> str:
    protocol = raw.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise RuleError(f"{where}.protocol: {protocol!r} is not TCP, UDP or SCTP")
    return str(protocol)


def parse_port(raw: object, where: str) -> Port:
    """``{portNumber | portRange | namedPort}`` (also AdminNetworkPolicy's form)."""
    field, value = _one_of(raw, ("portNumber", "portRange", "namedPort"), where)
    where = f"{where}.{field}"
    if field == "namedPort":
        if not isinstance(value, str) or not PORT_NAME.match(value):
            raise RuleError(f"{where}: {value!r} is not a valid port name")
        return Port(name=value)
    if not isinstance(value, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    if field == "portNumber":
        number = _number(value.get("port"), f"{where}.port")
        return Port(_protocol(value, where), number, number)
    start = _number(value.get("start"), f"{where}.start")
    end = _number(value.get("end"), f"{where}.end")
    if start > end:
        raise RuleError(f"{where}: start {start} is after end {end}")
    return Port(_protocol(value, where), start, end)


def _entry(raw: object, direction: Direction, tier: Tier, where: str) -> Entry:
    if not isinstance(raw, Mapping):
        raise RuleError(f"{where}: expected a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise RuleError(f"{where}.name: needs a name of 1-{MAX_NAME} characters")
    action = raw.get("action")
    if action not in ("Allow", "Deny", "Pass"):
        raise RuleError(f"{where}.action: {action!r} is not Allow, Deny or Pass")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise RuleError(f"{where}.log: expected true or false")
    field = "from" if direction == "ingress" else "to"
    peers, ports = raw.get(field), raw.get("ports") or []
    if not isinstance(peers, list) or not 1 <= len(peers) <= MAX_PEERS:
        raise RuleError(f"{where}.{field}: needs 1-{MAX_PEERS} peers")
    if not isinstance(ports, list) or len(ports) > MAX_PEERS:
        raise RuleError(f"{where}.ports: needs a list of at most {MAX_PEERS} ports")
    return Entry(
        name=name,
        action=action,
        log=log,
        peers=tuple(_peer(p, direction, f"{where}.{field}[{i}]") for i, p in enumerate(peers)),
        ports=tuple(parse_port(p, f"{where}.ports[{i}]") for i, p in enumerate(ports)),
    )


def _entries(raw: object, direction: Direction, tier: Tier) -> tuple[Entry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_RULES:
        raise RuleError(f"spec.{direction}: needs a list of at most {MAX_RULES} rules")
    entries = tuple(_entry(r, direction, tier, f"spec.{direction}[{i}]") for i, r in enumerate(raw))
    names = [entry.name for entry in entries]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise RuleError(f"spec.{direction}: rule name {duplicate!r} is used twice")
    return entries


def _head(spec: Mapping[str, Any]) -> tuple[Tier, int]:
    tier = spec.get("tier")
    if tier not in ("Admin", "Baseline"):
        raise RuleError(f"spec.tier: {tier!r} is not Admin or Baseline")
    priority = spec.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise RuleError(f"spec.priority: {priority!r} is not an integer 0-1000")
    return tier, priority


def parse(doc: Mapping[str, Any]) -> FirewallRule:
    """The typed rule; problems make it fail closed (see module doc)."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    generation = meta.get("generation")
    rule = FirewallRule(
        name=str(meta.get("name") or ""),
        generation=generation if isinstance(generation, int) else 0,
    )
    declared = frozenset(d for d in ("ingress", "egress") if spec.get(d) is not None)
    isolate: frozenset[Direction] = declared or frozenset({"ingress", "egress"})  # type: ignore[assignment]
    try:
        rule = replace(rule, subject=parse_subject(spec.get("subject")))
        tier, priority = _head(spec)
        rule = replace(rule, tier=tier, priority=priority)
        return replace(
            rule,
            ingress=_entries(spec.get("ingress"), "ingress", tier),
            egress=_entries(spec.get("egress"), "egress", tier),
        )
    except (RuleError, selectors.SelectorError, cidrs.CIDRError) as exc:
        reason = f"{exc}; failing closed" if rule.subject else f"{exc}; ignored (no subject)"
        problem = Problem(KIND, "", rule.name, reason)
        return replace(rule, problems=(problem,), isolate=isolate if rule.subject else frozenset())
