"""``podwall lab up --backend``: every backend the plugin accepts, ``auto``
by default, recorded in the lab's state and its layout (the node conflists
are written from it: ``tests/e2e/test_lab_lifecycle.py`` checks a node)."""

from __future__ import annotations

import argparse

import pytest

from firewall_lab.lab import state
from firewall_plugin import config
from podwall import __main__ as entry


def parse(*argv: str) -> argparse.Namespace:
    return entry.command_parser("lab").parse_args(["up", "--dir", "/tmp/lab", *argv])


def test_default_is_auto_and_every_plugin_backend_is_accepted() -> None:
    assert parse().backend == "auto"
    for name in config.BACKENDS:
        assert parse("--backend", name).backend == name


def test_an_unknown_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse("--backend", "ebtables")
    assert stopped.value.code == 2
    assert "invalid choice: 'ebtables'" in capsys.readouterr().err


def test_the_state_file_carries_the_backend_into_the_layout() -> None:
    recorded = state.LabState(lab_id="abc123", backend="iptables-legacy")
    assert recorded.layout("/tmp/lab").backend == "iptables-legacy"
    assert state.LabState(lab_id="abc123").layout("/tmp/lab").backend == "auto"
