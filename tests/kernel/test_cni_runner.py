"""The conflist runner against the real reference CNI plugins (no podwall).

A throwaway node netns runs the plugins; pods are namespaces from ``make_ns``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from firewall_lab import cni_cache, probe
from firewall_lab.cni_conf import JSON
from firewall_lab.cni_errors import PluginError, PluginNotFoundError, PluginTimeoutError
from firewall_lab.cni_runner import Runner, as_network
from tests.kernel import cni_helpers
from tests.kernel.cni_helpers import Node, Pod

V4 = "10.90.0.0/24"


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    return Node(node_ns, str(tmp_path))


def links(pod_ns: str, node: Node) -> str:
    return node.run(["ip", "netns", "exec", pod_ns, "ip", "-br", "addr"])


def reserved(node: Node, network: str) -> list[str]:
    """host-local's reservations (one file per IP) for ``network``."""
    folder = os.path.join(node.dir("ipam"), network)
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if name[0].isdigit())


def assert_gone(node: Node, pod: Pod, network: str = "podnet") -> None:
    assert "eth0" not in links(pod.netns, node)
    assert pod.ip() not in reserved(node, network)
    assert node.runner.cached_result(network_of(network), pod.attachment) is None


def network_of(name: str) -> JSON:
    return cni_helpers.conflist([{"type": "bridge"}], name=name)


def test_add_check_del_through_bridge_and_firewall(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4]), cni_helpers.reference_firewall()])
    pod = node.add(net, make_ns())
    assert pod.ip().startswith("10.90.0.") and pod.ip() in links(pod.netns, node)
    assert reserved(node, "podnet") == [pod.ip()]  # host-local got the injected name
    path = cni_cache.result_path(node.dir("cache"), "podnet", pod.attachment.container_id, "eth0")
    with open(path) as handle:
        cached = json.load(handle)
    assert (cached["kind"], cached["result"]) == ("cniCacheV1", pod.result)
    # firewall refuses to run without prevResult: its CNI-FORWARD rules prove chaining
    assert f"{pod.ip()}/32" in node.run(["iptables-nft", "-S", "CNI-FORWARD"])
    node.runner.check(net, pod.attachment)
    node.runner.delete(net, pod.attachment)
    assert_gone(node, pod)
    assert not os.path.exists(path)
    node.runner.delete(net, pod.attachment)  # nothing cached: DEL still succeeds


def test_single_plugin_conf_file(node: Node, make_ns: Any, tmp_path: Any) -> None:
    conf = {"cniVersion": "1.0.0", "name": "single", **node.bridge([V4])}
    path = tmp_path / "10-single.conf"
    path.write_text(json.dumps(conf))
    pod = node.add(as_network(str(path)), make_ns())
    assert pod.ip() in links(pod.netns, node)
    node.runner.delete(str(path), pod.attachment)
    assert_gone(node, pod, "single")


BAD_TUNING = {"type": "tuning", "sysctl": {"net.core.no_such_sysctl": "1"}}


def test_failed_add_rolls_back_plugins_already_added(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4]), BAD_TUNING])
    pod_ns = make_ns()
    attachment = cni_helpers.attachment_for(pod_ns)
    with pytest.raises(PluginError) as failure:
        node.runner.add(net, attachment)
    assert failure.value.plugin == "tuning" and failure.value.command == "ADD"
    assert failure.value.code is not None and failure.value.msg
    assert failure.value.cleanup_errors == []
    assert "eth0" not in links(pod_ns, node)
    assert reserved(node, "podnet") == []
    assert node.runner.cached_result(net, attachment) is None


def test_incompatible_version_is_a_typed_error(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4])], version="1.1.0")
    with pytest.raises(PluginError) as failure:
        node.runner.add(net, cni_helpers.attachment_for(make_ns()))
    assert (failure.value.plugin, failure.value.code) == ("bridge", 1)
    assert "incompatible" in failure.value.msg
    assert failure.value.cleanup_errors == []  # a plugin that refused did nothing


def test_missing_plugin_rolls_back(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4]), {"type": "no-such-plugin"}])
    pod_ns = make_ns()
    with pytest.raises(PluginNotFoundError):
        node.runner.add(net, cni_helpers.attachment_for(pod_ns))
    assert "eth0" not in links(pod_ns, node)
    assert reserved(node, "podnet") == []


def test_hanging_plugin_times_out(node: Node, tmp_path: Any) -> None:
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    hang = bin_dir / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    runner = Runner(cni_path=[str(bin_dir)], cache_dir=node.dir("cache"), timeout=0.5)
    net = cni_helpers.conflist([{"type": "hang"}])
    started = time.monotonic()
    with pytest.raises(PluginTimeoutError) as failure:
        runner.add(net, cni_helpers.attachment_for("none"))
    assert time.monotonic() - started < 5
    assert failure.value.code is None and failure.value.plugin == "hang"


def test_parallel_adds_get_distinct_addresses_and_connect(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4, "fd00:90::/64"])])
    pods = node.add_many(net, [make_ns() for _ in range(8)])
    assert len({pod.ip() for pod in pods}) == 8
    assert len({pod.ip("ipv6") for pod in pods}) == 8
    with probe.serve(pods[0].netns, tcp=[80]):
        items = [
            probe.Probe(pod.netns, probe.Target(pods[0].ip(family), 80, "TCP"))
            for pod in pods[1:]
            for family in ("ipv4", "ipv6")
        ]
        assert all(probe.probe_many(items).values())
    node.delete(net, pods)
    assert reserved(node, "podnet") == []
    assert node.runner.cached_attachments(net) == []


def test_gc_deletes_cached_attachments_not_valid(node: Node, make_ns: Any) -> None:
    net = cni_helpers.conflist([node.bridge([V4])])
    keep, *stale = node.add_many(net, [make_ns(), make_ns(), make_ns()])
    report = node.runner.gc(net, valid=[keep.attachment])
    assert sorted(a.container_id for a in report.deleted) == sorted(
        pod.attachment.container_id for pod in stale
    )
    assert report.collected == []  # cniVersion 1.0.0: no GC verb
    for pod in stale:
        assert_gone(node, pod)
    assert reserved(node, "podnet") == [keep.ip()]
    assert node.runner.cached_attachments(net) == [keep.attachment]


def test_status_skips_plugins_without_the_version(node: Node) -> None:
    old = cni_helpers.conflist([node.bridge([V4])])
    assert node.runner.status(old) == []  # before 1.1.0 there is no STATUS
    new = cni_helpers.conflist([node.bridge([V4]), cni_helpers.portmap()], version="1.1.0")
    assert node.runner.status(new) == ["bridge", "portmap"]
    assert node.runner.gc(new, valid=[]).skipped == ["bridge", "portmap"]
