"""The API server double's validation messages read like kube-apiserver's:
values as JSON (``"Nope"``, ``true``, ``null``), JSON type names, never a
Python repr (``'Nope'``, ``True``, ``None``, ``<class``, ``dict``)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from firewall_lab.apiserver import errors, validation

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tier"],
    "properties": {
        "tier": {"type": "string", "enum": ["Admin", "Baseline"]},
        "priority": {"type": "integer", "minimum": 0, "maximum": 1000},
        "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "rules": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object"},
        },
        "flag": {"type": "boolean"},
        "cidr": {
            "type": "string",
            "x-kubernetes-validations": [{"rule": "self.contains('/')", "message": "not a CIDR"}],
        },
    },
}
PYTHON_LOOKS = re.compile(r"'|<class|\b(True|False|None|dict|str|int|bool|float|list)\b")


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ({"tier": "Nope"}, 'Unsupported value: "Nope": supported values: "Admin", "Baseline"'),
        (
            {"tier": "Admin", "priority": "high"},
            'Invalid value: "string": priority in body must be of type integer: "string"',
        ),
        ({"tier": "Admin", "priority": True}, 'Invalid value: "boolean": priority in body'),
        ({"tier": None}, 'Invalid value: "null": tier in body must be of type string'),
        (
            {"tier": "Admin", "priority": 2000},
            "Invalid value: 2000: should be less than or equal to 1000",
        ),
        ({"tier": "Admin", "name": "AB1"}, "Invalid value: \"AB1\": should match '^[a-z]+$'"),
        ({"tier": "Admin", "tags": ["a", "a"]}, 'Duplicate value: "a"'),
        (
            {"tier": "Admin", "rules": [{"name": "x"}, {"name": "x"}]},
            'Duplicate value: {"name":"x"}',
        ),
        (
            {"tier": "Admin", "flag": "yes"},
            'Invalid value: "string": flag in body must be of type boolean',
        ),
        ({"tier": "Admin", "cidr": "10.0.0.1"}, 'Invalid value: "10.0.0.1": not a CIDR'),
    ],
    ids=["enum", "type", "bool-for-int", "null", "maximum", "pattern", "set", "map", "bool", "cel"],
)
def test_messages_show_json_values(value: dict[str, Any], wanted: str) -> None:
    messages = [cause["message"] for cause in validation.validate(SCHEMA, value)]
    assert any(wanted in message for message in messages), messages
    for message in messages:
        stripped = message.replace("'^[a-z]+$'", "")  # kube-apiserver quotes patterns so
        assert not PYTHON_LOOKS.search(stripped), message


@pytest.mark.parametrize(
    ("value", "text"),
    [("a", '"a"'), (True, "true"), (None, "null"), ({"b": 1, "a": [1.5]}, '{"a":[1.5],"b":1}')],
)
def test_shown(value: Any, text: str) -> None:
    assert errors.shown(value) == text
