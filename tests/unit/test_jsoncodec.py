"""``jsoncodec``: the same results and errors as the json package."""

from __future__ import annotations

import json
from typing import Any

import pytest

from firewall_plugin import jsoncodec

TEXTS = {
    "config": '{"cniVersion": "1.0.0", "prevResult": {"ips": [{"address": "10.0.0.5/24"}]}}',
    "scalars": '[1, -2.5, 3e10, true, false, null, "x"]',
    "escapes": '"\\u00e9\\ud83d\\ude00\\n\\"\\\\"',
    "non-ascii": '{"é": "ü"}',
    "whitespace": ' \t\n{"a" : 1 }\r\n',
    "constants": "[NaN, Infinity, -Infinity]",
    "empty-object": "{}",
}
BAD = {
    "empty": "",
    "blank": "  ",
    "open": "{",
    "extra-data": '{"a": 1} x',
    "bom": '\ufeff{"a": 1}',
    "trailing-comma": "[1,]",
    "missing-colon": '{"a" 1}',
    "bare-word": "nul",
    "control-char": '"\x01"',
    "two-objects": '{"a": 1}{"b": 2}',
}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_loads_like_json(text: str) -> None:
    assert repr(jsoncodec.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_loads_fails_like_json(text: str) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(ValueError) as got:
        jsoncodec.loads(text)
    assert str(got.value) == str(expected.value)


VALUES: dict[str, Any] = {
    "result": {"cniVersion": "1.0.0", "ips": [{"address": "fd00::5/64", "x": 1.5}], "n": None},
    "unsorted": {"b": 1, "a": [2, (3, 4)]},
    "non-ascii": {"é": "ü😀"},
    "string": "podwall",
    "number": 3,
    "infinity": float("inf"),
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
@pytest.mark.parametrize("sort_keys", [False, True])
def test_dumps_like_json(value: Any, sort_keys: bool) -> None:
    assert jsoncodec.dumps(value, sort_keys=sort_keys) == json.dumps(value, sort_keys=sort_keys)
    assert jsoncodec.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    ("value", "error"),
    [({"a": object()}, TypeError), ({1j: 2}, TypeError)],
    ids=["unserialisable-value", "complex-key"],
)
def test_dumps_fails_like_json(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as expected:
        json.dumps(value)
    with pytest.raises(error) as got:
        jsoncodec.dumps(value)
    assert str(got.value) == str(expected.value)


def test_dumps_refuses_circular_values() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsoncodec.dumps(loop)
