"""NetworkPolicy (networking.k8s.io/v1) parsed and validated into typed objects.

Defaults follow the API: ``policyTypes`` is ``[Ingress]`` plus ``Egress`` when
egress rules exist; a port without protocol is TCP; a missing or empty
``from``/``to``/``ports`` matches everything (``peers``/``ports`` are then
``()``); an empty ``ingress`` list allows nothing.

The annotation ``podwall.io/log: "true"`` (``LOG_ANNOTATION``, like Antrea's
``policy.antrea.io/enable-logging``) asks for the traffic the policy denies
(the isolation drop of the pods it selects) to be logged; any value other
than ``"true"``/``"false"`` is a warning and means false.

A policy with any problem keeps its pod selection but loses all its rules, so
the pods it selects are isolated in its directions (fail closed).  A policy
whose ``podSelector`` is invalid selects every pod of its namespace.

Pure: no I/O; never raises on bad content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from firewall_operator import cidrs, selectors
from firewall_operator.problems import Problem

Direction = Literal["ingress", "egress"]
KIND = "NetworkPolicy"
PROTOCOLS = ("TCP", "UDP", "SCTP")
LOG_ANNOTATION = "podwall.io/log"
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


class PolicyError(ValueError):
    """One reason a policy is invalid."""


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: cidrs.Network
    excepts: tuple[cidrs.Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Peer:
    """Exactly one of: selectors (either may be None) or ``ip_block``.
    ``namespace_selector is None`` means the policy's own namespace."""

    pod_selector: selectors.Selector | None = None
    namespace_selector: selectors.Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class Port:
    """``port`` None: every port of ``protocol``; str: a named port."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    peers: tuple[Peer, ...] = ()
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: selectors.Selector = selectors.EVERYTHING
    policy_types: frozenset[Direction] = frozenset({"ingress"})
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    problems: tuple[Problem, ...] = ()
    log: bool = False  # the LOG_ANNOTATION
    generation: int = 0  # metadata.generation (realization status)
    uid: str = ""  # metadata.uid (Warning events name it)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress


def _ip_block(raw: Mapping[str, Any], where: str) -> IPBlock:
    cidr = cidrs.parse(raw.get("cidr"), f"{where}.cidr")
    excepts = []
    for number, text in enumerate(raw.get("except") or []):
        inner = cidrs.parse(text, f"{where}.except[{number}]")
        if inner.version != cidr.version or not inner.subnet_of(cidr) or inner == cidr:  # type: ignore[arg-type]
            raise PolicyError(f"{where}.except[{number}]: {text} is not strictly inside {cidr}")
        excepts.append(inner)
    return IPBlock(cidr, tuple(excepts))


def _peer(raw: object, where: str) -> Peer:
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in raw:
        if "podSelector" in raw or "namespaceSelector" in raw:
            raise PolicyError(f"{where}: ipBlock cannot be combined with selectors")
        return Peer(ip_block=_ip_block(raw["ipBlock"] or {}, f"{where}.ipBlock"))
    pods = raw.get("podSelector")
    namespaces = raw.get("namespaceSelector")
    return Peer(
        pod_selector=None if pods is None else selectors.parse(pods, where=f"{where}.podSelector"),
        namespace_selector=None
        if namespaces is None
        else selectors.parse(namespaces, where=f"{where}.namespaceSelector"),
    )


def _port(raw: object, where: str) -> Port:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a mapping")
    protocol = raw.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise PolicyError(f"{where}.protocol: {protocol!r} is not TCP, UDP or SCTP")
    port, end = raw.get("port"), raw.get("endPort")
    if isinstance(port, bool) or (isinstance(port, int) and not 1 <= port <= 65535):
        raise PolicyError(f"{where}.port: {port!r} is not 1-65535")
    if isinstance(port, str) and not PORT_NAME.match(port):
        raise PolicyError(f"{where}.port: {port!r} is not a valid port name")
    if port is not None and not isinstance(port, int | str):
        raise PolicyError(f"{where}.port: expected a number or a name")
    if end is not None:
        if not isinstance(port, int):
            raise PolicyError(f"{where}.endPort: needs a numeric port")
        if isinstance(end, bool) or not isinstance(end, int) or not port <= end <= 65535:
            raise PolicyError(f"{where}.endPort: {end!r} must be between port and 65535")
    return Port(str(protocol), port, end)


def _rules(raw: object, direction: Direction) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise PolicyError(f"spec.{direction}: expected a list")
    peer_field = "from" if direction == "ingress" else "to"
    rules = []
    for number, item in enumerate(raw):
        where = f"spec.{direction}[{number}]"
        item = item or {}
        if not isinstance(item, Mapping):
            raise PolicyError(f"{where}: expected a mapping")
        peers = item.get(peer_field) or []
        ports = item.get("ports") or []
        if not isinstance(peers, list) or not isinstance(ports, list):
            raise PolicyError(f"{where}: {peer_field} and ports must be lists")
        rules.append(
            Rule(
                peers=tuple(_peer(p, f"{where}.{peer_field}[{i}]") for i, p in enumerate(peers)),
                ports=tuple(_port(p, f"{where}.ports[{i}]") for i, p in enumerate(ports)),
            )
        )
    return tuple(rules)


def _policy_types(spec: Mapping[str, Any]) -> frozenset[Direction]:
    raw = spec.get("policyTypes")
    if raw is None:
        return frozenset({"ingress", "egress"} if spec.get("egress") else {"ingress"})
    if not isinstance(raw, list) or any(t not in ("Ingress", "Egress") for t in raw):
        raise PolicyError(f"spec.policyTypes: {raw!r} must list Ingress and/or Egress")
    return frozenset("ingress" if t == "Ingress" else "egress" for t in raw)


def _log(meta: Mapping[str, Any], policy: NetworkPolicy) -> NetworkPolicy:
    annotations = meta.get("annotations")
    raw = annotations.get(LOG_ANNOTATION) if isinstance(annotations, Mapping) else None
    if raw is None or str(raw).lower() == "false":
        return policy
    if str(raw).lower() == "true":
        return replace(policy, log=True)
    reason = f"annotation {LOG_ANNOTATION}: {raw!s} is not true or false; not logging"
    problem = Problem(KIND, policy.namespace, policy.name, reason, "warning")
    return replace(policy, problems=(*policy.problems, problem))


def parse(doc: Mapping[str, Any]) -> NetworkPolicy:
    """The typed policy; problems make it fail closed (see module doc)."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    generation = meta.get("generation")
    policy = NetworkPolicy(
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
        generation=generation if isinstance(generation, int) else 0,
        uid=str(meta.get("uid") or ""),
    )
    return _log(meta, _parse_spec(policy, spec))


def _parse_spec(policy: NetworkPolicy, spec: Mapping[str, Any]) -> NetworkPolicy:
    problem = None
    try:
        policy = replace(
            policy, pod_selector=selectors.parse(spec.get("podSelector"), where="spec.podSelector")
        )
    except selectors.SelectorError as exc:
        problem = str(exc)
    try:
        policy = replace(policy, policy_types=_policy_types(spec))
    except PolicyError as exc:
        return _failed(replace(policy, policy_types=frozenset({"ingress", "egress"})), str(exc))
    if problem is not None:
        return _failed(policy, problem)
    try:
        return replace(
            policy,
            ingress=_rules(spec.get("ingress") or [], "ingress"),
            egress=_rules(spec.get("egress") or [], "egress"),
        )
    except (PolicyError, selectors.SelectorError, cidrs.CIDRError) as exc:
        return _failed(policy, str(exc))


def _failed(policy: NetworkPolicy, reason: str) -> NetworkPolicy:
    problem = Problem(KIND, policy.namespace, policy.name, f"{reason}; failing closed")
    return replace(policy, ingress=(), egress=(), problems=(*policy.problems, problem))
