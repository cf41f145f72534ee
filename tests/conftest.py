"""Shared fixtures.

Kernel and e2e tests need root and network namespaces; without them they skip
with one clear message.  Every namespace a fixture makes is deleted afterwards,
even when the test fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from firewall_lab import netns

CNI_PATH = os.environ.get("PODWALL_CNI_PATH", "/usr/lib/cni")
NO_ROOT = "kernel tests need root (network namespaces, iptables); run `sudo make test`"


def kernel_ready() -> str | None:
    """None when kernel tests can run, else the reason they cannot."""
    if os.geteuid() != 0:
        return NO_ROOT
    for tool in ("ip", "iptables-nft", "iptables-legacy", "ipset", "nft"):
        if shutil.which(tool) is None:
            return f"kernel tests need {tool}; `make test` installs it with apt-get as root"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "kernel" in parts:
            item.add_marker(pytest.mark.kernel)
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
    reason = kernel_ready()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "kernel" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def node_ns() -> Iterator[str]:
    """A throwaway "node" network namespace with forwarding on; deleted after."""
    name = netns.create(
        netns.unique_name("pwnode"),
        sysctls={
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
        },
    )
    try:
        yield name
    finally:
        netns.delete(name)


@pytest.fixture
def make_ns() -> Iterator[object]:
    """A factory of extra namespaces (pods); all deleted after the test."""
    made: list[str] = []

    def factory(prefix: str = "pwpod") -> str:
        name = netns.create(
            netns.unique_name(prefix),
            sysctls={
                "net.ipv6.conf.all.accept_dad": "0",
                "net.ipv6.conf.default.accept_dad": "0",
            },
        )
        made.append(name)
        return name

    try:
        yield factory
    finally:
        for name in made:
            netns.delete(name)
