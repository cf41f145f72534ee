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
from firewall_plugin import links, podns

PODS: dict[str, str] = {}  # node namespace -> its pod namespace


@pytest.fixture
def node() -> Iterator[str]:
    name = netns.create(netns.unique_name("pwlnk"))
    pod = netns.create(netns.unique_name("pwlnkp"))
    PODS[name] = pod
    try:
        netns.run(name, ["ip", "link", "add", "brx0", "type", "bridge"])
        netns.run(name, ["ip", "link", "add", "vport0", "type", "veth", "peer", "name", "eth0",
                         "netns", pod])  # fmt: skip
        netns.run(name, ["ip", "link", "set", "vport0", "master", "brx0"])
        netns.run(name, ["ip", "link", "add", "vlone0", "type", "veth", "peer", "name", "vlone1"])
        yield name
    finally:
        PODS.pop(name, None)
        netns.delete(pod)
        netns.delete(name)


def answers(names: list[str]) -> list[tuple[str, tuple[str, bool]]]:
    found = []
    for name in names:
        kind, nsid, master, _ = links.inspect(name)
        found.append((links.bridge_named(master), (kind, nsid >= 0)))
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


def link_locals(pod: str) -> list[tuple[str | None, str]]:
    """For each (host end, name asked): the peer's link-local asked from the
    node (``peer_link_local``) and read inside the pod (``podns``)."""
    found = []
    for host, ifname in (("vport0", "eth0"), ("vport1", "eth1"), ("vport0", "eth1")):
        kind, nsid, _, peer = links.inspect(host)
        assert kind == "veth" and nsid >= 0 and peer > 0
        found.append(
            (links.peer_link_local(nsid, peer, ifname), podns.link_local(netns.path(pod), ifname))
        )
    return found


def test_the_pods_link_local_is_asked_from_the_node(node: str) -> None:
    pod = PODS[node]
    netns.run(node, ["ip", "link", "add", "vport1", "type", "veth", "peer", "name", "eth1",
                     "netns", pod])  # fmt: skip
    netns.run(pod, ["ip", "link", "set", "eth1", "addrgenmode", "none"])  # no link-local
    for link, where in (("vport0", node), ("vport1", node), ("eth0", pod), ("eth1", pod)):
        netns.run(where, ["ip", "link", "set", link, "up"])
    found = netns.call(node, link_locals, pod)
    eth0 = found[0][1]
    assert eth0.startswith("fe80:")
    assert found == [
        (eth0, eth0),  # the same address as inside the pod
        ("", ""),  # a pod interface without a link-local address
        (None, ""),  # the peer is not called eth1: the caller asks inside instead
    ]
