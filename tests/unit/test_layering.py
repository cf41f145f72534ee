"""Imports only go down, and the host gets the plugin only.

``podwall → firewall_lab → firewall_operator → firewall_plugin``, with
``firewall_install`` beside ``firewall_operator``: it imports only
``firewall_plugin``, and ``firewall_plugin`` imports none of the others (its
CNI path is what the host bundle carries).  Read from the sources (every
``import``, also inside functions), so a lazy import cannot hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("podwall", "firewall_lab", "firewall_install", "firewall_operator", "firewall_plugin")
#: package → the project packages it may import
ALLOWED = {
    "firewall_plugin": set(),
    "firewall_install": {"firewall_plugin"},
    "firewall_operator": {"firewall_plugin"},
    "firewall_lab": {"firewall_operator", "firewall_install", "firewall_plugin"},
    "podwall": {"firewall_lab", "firewall_install", "firewall_operator", "firewall_plugin"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_down(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_packages(path) - ALLOWED[package] - {package}
    }
    assert wrong == set()


def test_the_installer_is_not_in_the_plugin_package() -> None:
    names = [p.name for p in (ROOT / "firewall_plugin").glob("*.py")]
    leftovers = [n for n in names if n.startswith("install") or n in ("apiclient.py", "removal.py")]
    assert leftovers == []
