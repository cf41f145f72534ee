"""Conformance markers: every case runs with ``-m conformance_full``; the
default run takes the cases each module lists as its quick subset."""

from __future__ import annotations

import pytest

FULL = "conformance_full"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{FULL}: long conformance runs (ptp, dual-stack: all cases)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason=f"long conformance case: run with -m {FULL}")
    for item in items:
        if FULL in item.keywords:
            item.add_marker(skip)
