"""``values.Frozen``: the plugin's value classes behave like frozen dataclasses."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest

from firewall_plugin import agent_client, config, endpoints, model, protocol, render, values
from firewall_plugin.backends.table import KernelTable

FROZEN_CLASSES = [
    model.Match,
    model.Rule,
    model.Chain,
    model.IPSet,
    model.FamilyState,
    endpoints.EndpointRecord,
    protocol.Environment,
    config.PluginConfig,
    agent_client.Answer,
    render.SetHeader,
]


@pytest.mark.parametrize("cls", FROZEN_CLASSES, ids=lambda cls: cls.__name__)
def test_constructor_parameters_are_the_fields_in_order(cls: type[values.Frozen]) -> None:
    parameters = list(inspect.signature(cls).parameters)
    assert parameters == list(cls._fields)
    assert set(cls.__slots__) == set(cls._fields)


RULE = model.Rule("DROP", "podwall: x", source="10.0.0.1", matches=(model.Match("conntrack"),))


def test_equality_hash_and_repr() -> None:
    same = model.Rule("DROP", "podwall: x", "10.0.0.1", matches=(model.Match("conntrack", ()),))
    assert same == RULE and hash(RULE) == hash(same)
    assert RULE.replace(goto=True) != RULE
    assert model.Chain("X") != model.Match("X")  # same values, other class
    assert repr(model.Match("m", (("a", "b"),))) == "Match(module='m', options=(('a', 'b'),))"


def test_immutable() -> None:
    with pytest.raises(AttributeError):
        RULE.target = "ACCEPT"
    with pytest.raises(AttributeError):
        del RULE.comment
    with pytest.raises(AttributeError):
        RULE.other = 1


def test_replace_keeps_other_fields_and_refuses_unknown_names() -> None:
    changed = RULE.replace(target="RETURN", goto=True)
    assert (changed.target, changed.goto, changed.source) == ("RETURN", True, "10.0.0.1")
    with pytest.raises(TypeError, match="no field 'nope'"):
        RULE.replace(nope=1)


def test_pickle_and_copy() -> None:
    state = model.FamilyState("ipv4", {"C": model.Chain("C", (RULE,))})
    assert pickle.loads(pickle.dumps(state)) == state
    assert copy.deepcopy(state) == state and copy.copy(RULE) == RULE


def test_mutable_defaults_are_fresh() -> None:
    first, second = model.FamilyState("ipv4"), model.FamilyState("ipv4")
    assert first.chains == {} and first.chains is not second.chains
    assert endpoints.EndpointRecord("c", "eth0").extra == {}


def test_kernel_table_is_mutable_and_compared_by_value() -> None:
    table = KernelTable()
    table.chains.setdefault("PODWALL-X", []).append("-j DROP")
    assert table == KernelTable({"PODWALL-X": ["-j DROP"]}, {"FORWARD": []})
    assert pickle.loads(pickle.dumps(table)) == table
    with pytest.raises(TypeError):
        hash(table)


def test_literal_aliases_exist_at_run_time() -> None:
    from firewall_plugin import dataplane

    assert model.Family.__args__ == ("ipv4", "ipv6")  # type: ignore[attr-defined]
    assert dataplane.DenyAction.__args__ == ("drop", "reject")  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        model.Nothing  # type: ignore[attr-defined]  # noqa: B018


class _Lone(values.Frozen):
    __slots__ = ("value",)
    value: object

    def __init__(self, value: object) -> None:
        values.init_fields(self, value)


class _Empty(values.Frozen):
    __slots__ = ()

    def __init__(self) -> None:
        values.init_fields(self)


EQUALITY_CASES = {
    "lone-field-equal": (_Lone((1, 2)), _Lone((1, 2)), True),
    "lone-field-differs": (_Lone(1), _Lone(2), False),
    "no-fields": (_Empty(), _Empty(), True),
    "many-fields-equal": (RULE, RULE.replace(), True),
    "many-fields-differ": (RULE, RULE.replace(comment="podwall: y"), False),
    "chains-of-equal-rules": (
        model.Chain("C", (RULE, RULE.replace())),
        model.Chain("C", (RULE.replace(), RULE)),
        True,
    ),
}


@pytest.mark.parametrize(("left", "right", "equal"), EQUALITY_CASES.values(), ids=EQUALITY_CASES)
def test_equality_and_hash_by_fields(
    left: values.Frozen, right: values.Frozen, equal: bool
) -> None:
    assert (left == right) is equal and (left != right) is not equal
    assert left == left
    if equal:
        assert hash(left) == hash(right)
    assert (left == object()) is False
