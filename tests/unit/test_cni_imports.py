"""The CNI plugin's start-up imports stay small (docs/design.md: start-up cost matters).

Each module named here cost the plugin milliseconds of CPU per pod when it
was on the ADD path (``bench/bench_plugin.py``, ``-X importtime``); the
plugin must not pull it back in.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import firewall_plugin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(firewall_plugin.__file__)))
ADD_PATH = (
    "firewall_plugin.cni",
    "firewall_plugin.config",
    "firewall_plugin.commands",
    "firewall_plugin.backends.restore",
)
HEAVY = (
    "typing", "dataclasses", "inspect", "json", "re", "enum", "functools", "collections",
    "ipaddress", "hashlib", "base64", "subprocess", "threading", "contextlib", "socket",
)  # fmt: skip


def _loaded(code: str) -> set[str]:
    program = f"import sys; sys.path[:0] = [{ROOT!r}]; {code}; print(' '.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-IS", "-c", program], capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_add_path_imports_no_heavy_module() -> None:
    loaded = _loaded(f"import {', '.join(ADD_PATH)}")
    assert sorted(loaded & set(HEAVY)) == []


@pytest.mark.parametrize("text", ["{", "", '{"a": 1} x'], ids=["open", "empty", "extra-data"])
def test_malformed_json_raises_json_errors_in_a_fresh_interpreter(text: str) -> None:
    code = (
        "from firewall_plugin import jsoncodec\n"
        f"try: jsoncodec.loads({text!r})\n"
        "except ValueError as exc: print(type(exc).__name__, exc)"
    )
    done = subprocess.run(
        [sys.executable, "-IS", "-c", f"import sys; sys.path[:0] = [{ROOT!r}]\n{code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("JSONDecodeError ")
