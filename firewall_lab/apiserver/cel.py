"""CEL ``x-kubernetes-validations`` rules, evaluated with cel-python (``celpy``).

``check`` evaluates the rules of one schema node with ``self`` (and ``oldSelf``
on updates; transition rules are skipped on create) and returns Status causes
for the rules that are false.  Besides standard CEL it offers part of the
Kubernetes IP/CIDR library (``isIP``, ``ip``, ``isCIDR``, ``cidr``,
``containsIP``, ``containsCIDR``, ``prefixLength``, ``family``) as plain
values (canonical strings).  A rule celpy cannot compile or evaluate (an
unknown function, a macro it lacks) is skipped with one log line; a rule that
reads a missing field fails, as in Kubernetes.  No I/O besides logging.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from typing import Any

import celpy
from celpy import adapter, celparser, celtypes, evaluation

from firewall_lab.apiserver import errors

Json = dict[str, Any]
log = logging.getLogger(__name__)
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_ip(text: Any) -> celtypes.BoolType:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _is_cidr(text: Any) -> celtypes.BoolType:
    try:
        ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType("/" in str(text))


def _net(value: Any) -> _Net:
    return ipaddress.ip_network(str(value), strict=False)


def _ip(value: Any) -> celtypes.StringType:
    text = str(value)
    if "/" in text:  # cidr(x).ip()
        return celtypes.StringType(str(ipaddress.ip_interface(text).ip))
    return celtypes.StringType(str(ipaddress.ip_address(text)))


def _cidr(value: Any) -> celtypes.StringType:
    iface = ipaddress.ip_interface(str(value))
    return celtypes.StringType(f"{iface.ip}/{iface.network.prefixlen}")


def _contains_ip(net: Any, addr: Any) -> celtypes.BoolType:
    return celtypes.BoolType(ipaddress.ip_address(str(_ip(addr))) in _net(net))


def _contains_cidr(net: Any, other: Any) -> celtypes.BoolType:
    inner, outer = _net(other), _net(net)
    return celtypes.BoolType(inner.version == outer.version and inner.subnet_of(outer))  # type: ignore[arg-type]


def _prefix_length(net: Any) -> celtypes.IntType:
    return celtypes.IntType(_net(net).prefixlen)


def _family(value: Any) -> celtypes.IntType:
    text = str(value).split("/")[0]
    return celtypes.IntType(ipaddress.ip_address(text).version)


FUNCTIONS: dict[str, Any] = {
    "isIP": _is_ip,
    "isCIDR": _is_cidr,
    "ip": _ip,
    "cidr": _cidr,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": _prefix_length,
    "family": _family,
}


@functools.lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=FUNCTIONS)


def _evaluate(rule: str, activation: Json) -> bool | None:
    """True/False, or None when celpy cannot evaluate the rule."""
    try:
        result = _program(rule).evaluate(activation)
    except celparser.CELParseError as exc:
        log.warning("CEL rule %r skipped: celpy cannot parse it: %s", rule, exc)
        return None
    except evaluation.CELEvalError as exc:
        if "no such" in str(exc.args[0] if exc.args else exc):
            return False
        log.warning("CEL rule %r skipped: celpy cannot evaluate it: %s", rule, exc)
        return None
    except ValueError:
        return False  # e.g. cidr() of malformed text: the rule fails, as in Kubernetes
    except TypeError as exc:
        log.warning("CEL rule %r skipped: celpy cannot evaluate it: %s", rule, exc)
        return None
    if isinstance(result, evaluation.CELEvalError):
        log.warning("CEL rule %r skipped: %s", rule, result)
        return None
    return bool(result)


def check(rules: list[Json], value: Any, *, old: Any, path: str) -> list[Json]:
    """Causes for the rules of one schema node that ``value`` breaks."""
    causes: list[Json] = []
    for entry in rules:
        rule = entry.get("rule", "")
        uses_old = "oldSelf" in rule
        if uses_old and old is None:
            continue  # transition rules only run on updates
        activation = {"self": adapter.json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = adapter.json_to_cel(old)
        if _evaluate(rule, activation) is not False:
            continue
        field = path + (entry.get("fieldPath") or "")
        message = entry.get("message") or f"failed rule: {rule}"
        shown = errors.shown(value) if not isinstance(value, (dict, list)) else '"object"'
        causes.append(
            errors.cause(
                field,
                f"Invalid value: {shown!s}: {message}",
                entry.get("reason") or "FieldValueInvalid",
            )
        )
    return causes
