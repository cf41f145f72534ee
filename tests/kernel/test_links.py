"""``links``: what the plugin learns about the pod's host-side interface, over rtnetlink.

Asked from a process that entered the node's namespace with ``setns`` alone
(``netns.call``, as podman under ``nsenter --net`` runs the plugin), so that
``/sys/class/net`` still shows another namespace: the answers must come from
the node's own links all the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firewall_lab import netns
from firewall_plugin import links


@pytest.fixture
def node() -> Iterator[str]:
    name = netns.create(netns.unique_name("pwlnk"))
    pod = netns.create(netns.unique_name("pwlnkp"))
    try:
        netns.run(name, ["ip", "link", "add", "brx0", "type", "bridge"])
        netns.run(name, ["ip", "link", "add", "vport0", "type", "veth", "peer", "name", "eth0",
                         "netns", pod])  # fmt: skip
        netns.run(name, ["ip", "link", "set", "vport0", "master", "brx0"])
        netns.run(name, ["ip", "link", "add", "vlone0", "type", "veth", "peer", "name", "vlone1"])
        yield name
    finally:
        netns.delete(pod)
        netns.delete(name)


def answers(names: list[str]) -> list[tuple[str, tuple[str, bool]]]:
    found = []
    for name in names:
        kind, elsewhere, master = links.describe(name)
        found.append((links.bridge_named(master), (kind, elsewhere)))
    return found


def test_bridge_and_kind_come_from_the_node_namespace(node: str) -> None:
    found = netns.call(node, answers, ["vport0", "vlone0", "brx0", "nosuch0", ""])
    assert found == [
        ("brx0", ("veth", True)),  # a pod's port: its peer is in another namespace
        ("", ("veth", False)),  # a veth on no bridge
        ("", ("bridge", False)),
        ("", ("", False)),
        ("", ("", False)),
    ]
