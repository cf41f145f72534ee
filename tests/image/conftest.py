"""The image tier (``make test-image``): skipped unless ``PODWALL_TEST_IMAGE`` names a
built image and podman runs as root here.  Figures the tests measure are
printed at the end of the run."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import kernel_ready
from tests.image import daemonset

FIGURES: dict[str, str] = {}


def image_ready() -> str | None:
    """None when the image tests can run, else why not."""
    if not daemonset.IMAGE:
        return "image tests run with `make test-image` (PODWALL_TEST_IMAGE names the image)"
    if shutil.which("podman") is None:
        return "image tests need podman (`make image-deps`)"
    reason = kernel_ready()
    if reason is not None:
        return reason
    done = daemonset.podman("image", "exists", daemonset.IMAGE, check=False)
    return None if done.returncode == 0 else f"no image {daemonset.IMAGE}: run `make image`"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = image_ready()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "image" in item.path.parts:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("image figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def figure(name: str, value: str) -> None:
    """Record a measured figure for the summary (and the environment's log)."""
    FIGURES[name] = value
    path = os.environ.get("PODWALL_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{name}: {value}\n")
