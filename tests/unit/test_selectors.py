"""Label selectors: matching, canonical keys, validation, and index selection
agreeing with a plain scan."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_operator import selectors

LABELS = {"app": "web", "tier": "front"}
MATCH = {
    "empty": ({}, True),
    "none": (None, True),
    "match-labels": ({"matchLabels": {"app": "web"}}, True),
    "match-labels-miss": ({"matchLabels": {"app": "db"}}, False),
    "in": ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]}, True),
    "notin-present": (
        {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]},
        False,
    ),
    "notin-absent-key": (
        {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]},
        True,
    ),
    "exists": ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
    "doesnotexist": ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    "and": (
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]},
        False,
    ),
}


@pytest.mark.parametrize(("raw", "expected"), MATCH.values(), ids=MATCH.keys())
def test_matches_and_index_agree(raw: Any, expected: bool) -> None:
    selector = selectors.parse(raw)
    assert selector.matches(LABELS) is expected
    index = selectors.LabelIndex([(1, LABELS), (2, {}), (3, {"app": "db"})])
    scanned = {
        n for n, labels in [(1, LABELS), (2, {}), (3, {"app": "db"})] if selector.matches(labels)
    }
    assert index.select(selector) == scanned


def test_equal_selectors_share_a_key() -> None:
    a = selectors.parse({"matchLabels": {"b": "2", "a": "1"}})
    b = selectors.parse(
        {
            "matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}],
            "matchLabels": {"b": "2"},
        }
    )
    assert a.key == b.key == "a=1,b=2"
    assert selectors.parse({}).key == "*"


INVALID = {
    "not-a-mapping": [1],
    "unknown-field": {"matchLabel": {}},
    "bad-operator": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
    "in-no-values": {"matchExpressions": [{"key": "a", "operator": "In"}]},
    "exists-with-values": {
        "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
    },
    "number-value": {"matchLabels": {"a": 1}},
    "empty-key": {"matchExpressions": [{"key": "", "operator": "Exists"}]},
}


@pytest.mark.parametrize("raw", INVALID.values(), ids=INVALID.keys())
def test_invalid_selectors_raise_selector_error(raw: Any) -> None:
    with pytest.raises(selectors.SelectorError):
        selectors.parse(raw)
