"""Kubernetes label selectors: parse, validate, match, and select from an index.

A selector is ``matchLabels`` plus ``matchExpressions`` (``In``, ``NotIn``,
``Exists``, ``DoesNotExist``), all ANDed; the empty selector matches
everything.  ``matchLabels`` entries become ``In`` requirements with one value,
so two spellings of the same selector share one canonical ``key`` (which names
the ipsets built from it).  ``NotIn`` and ``DoesNotExist`` match objects that
lack the key, as in Kubernetes.

Pure: no I/O.  Invalid selectors raise ``SelectorError``; callers turn that into
a reported problem, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    """The selector is malformed (the message says where and why)."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement; ``values`` are sorted and unique."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    @property
    def text(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{'!' if self.operator == 'DoesNotExist' else ''}{self.key}"
        if self.operator == "In" and len(self.values) == 1:
            return f"{self.key}={self.values[0]}"
        return f"{self.key} {self.operator.lower()} ({','.join(self.values)})"


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector: the AND of its requirements (sorted, unique)."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def is_empty(self) -> bool:
        return not self.requirements

    @property
    def key(self) -> str:
        """Canonical text: equal for selectors that select the same objects
        by construction (``{}`` is ``*``)."""
        return ",".join(r.text for r in self.requirements) or "*"


EVERYTHING = Selector()


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SelectorError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _key(value: object, where: str) -> str:
    key = _string(value, where)
    if not key or len(key) > 317:
        raise SelectorError(f"{where}: label key must be 1-317 characters")
    return key


def _expression(raw: object, where: str) -> Requirement:
    if not isinstance(raw, Mapping):
        raise SelectorError(f"{where}: expected a mapping")
    key = _key(raw.get("key"), f"{where}.key")
    operator = raw.get("operator")
    if operator not in OPERATORS:
        raise SelectorError(f"{where}.operator: {operator!r} is not one of {', '.join(OPERATORS)}")
    values = raw.get("values") or []
    if not isinstance(values, list):
        raise SelectorError(f"{where}.values: expected a list")
    strings = tuple(sorted({_string(v, f"{where}.values") for v in values}))
    if operator in ("In", "NotIn") and not strings:
        raise SelectorError(f"{where}: operator {operator} needs at least one value")
    if operator in ("Exists", "DoesNotExist") and strings:
        raise SelectorError(f"{where}: operator {operator} takes no values")
    return Requirement(key, operator, strings)


def parse(raw: object, *, where: str = "selector") -> Selector:
    """Parse a ``LabelSelector`` dict; ``None`` and ``{}`` select everything."""
    if raw is None:
        return EVERYTHING
    if not isinstance(raw, Mapping):
        raise SelectorError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise SelectorError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    requirements: set[Requirement] = set()
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise SelectorError(f"{where}.matchLabels: expected a mapping")
    for key, value in labels.items():
        label = _key(key, f"{where}.matchLabels")
        requirements.add(Requirement(label, "In", (_string(value, f"{where}.matchLabels.{key}"),)))
    expressions = raw.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SelectorError(f"{where}.matchExpressions: expected a list")
    for number, item in enumerate(expressions):
        requirements.add(_expression(item, f"{where}.matchExpressions[{number}]"))
    ordered = sorted(requirements, key=lambda r: (r.key, r.operator, r.values))
    return Selector(tuple(ordered))


class LabelIndex:
    """Objects (by integer id) indexed by label, for selection by set algebra
    instead of a scan per selector."""

    def __init__(self, items: Iterable[tuple[int, Mapping[str, str]]]) -> None:
        self.everything: set[int] = set()
        self.by_key: dict[str, set[int]] = {}
        self.by_pair: dict[tuple[str, str], set[int]] = {}
        for ident, labels in items:
            self.everything.add(ident)
            for key, value in labels.items():
                self.by_key.setdefault(key, set()).add(ident)
                self.by_pair.setdefault((key, value), set()).add(ident)

    def _requirement(self, requirement: Requirement) -> set[int]:
        if requirement.operator in ("Exists", "DoesNotExist"):
            found = self.by_key.get(requirement.key, set())
        else:
            found = set()
            for value in requirement.values:
                found |= self.by_pair.get((requirement.key, value), set())
        if requirement.operator in ("In", "Exists"):
            return found
        return self.everything - found

    def select(self, selector: Selector) -> frozenset[int]:
        """Ids of the objects the selector matches."""
        result: set[int] | None = None
        for requirement in selector.requirements:
            found = self._requirement(requirement)
            result = found if result is None else result & found
            if not result:
                break
        return frozenset(self.everything if result is None else result)
