"""A plugin killed -9 between its record write and its kernel write.

ADD writes the pod's endpoint record (atomically, under the podwall lock)
and then the kernel, in one transaction per family (nftables: one netlink
transaction; iptables: one restore per family).  A kill in between leaves
exactly this: the record on disk, nothing of the pod in the kernel, and a
pod whose interface the primary plugin has already made.  Two ways to get
there, both without any hook in the product:

* for real (``iptables-legacy``): the test holds the xtables lock through
  ``XTABLES_LOCKFILE`` (iptables' own setting, pointed at a file of the
  test: the machine's lock is never touched), so the plugin's first
  ``iptables-legacy-restore -w`` waits after the record is written; the
  plugin is killed -9 there, as a runtime's timeout kills it (the process,
  not its children).
* made directly (every backend): nftables and iptc write from the plugin's
  own process with nothing it waits for in between, so the test makes the
  state a kill leaves: the primary plugin's ADD, then the record the podwall
  ADD writes (with its own functions, in the node), and no kernel write.
  SIGSTOP or ptrace would stop the plugin at a point the test cannot
  choose; this is the one state such a kill can leave, each time.

Then each of the next ADD, DEL, GC and the agent's start-up repair leaves
the crashed pod fail-closed (traffic), its own DEL removes it, GC removes it
when the runtime no longer knows it, and the agent's sync programs it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from firewall_lab import cni_conf, probe
from firewall_lab.cni_runner import as_network
from firewall_operator.agent import config as agent_config
from firewall_operator.agent import node as agent_node
from firewall_plugin import endpoints
from tests.kernel import cni_helpers, faults
from tests.kernel.cni_helpers import Node, Pod
from tests.kernel.inside import entered

V4, V6 = "10.88.0.0/24", "fd00:88::/64"
#: the record half of the podwall ADD, run in the node (its sysfs, its links)
WRITE_RECORD = """
import json, sys
from firewall_plugin import commands, endpoints, protocol, result
given = json.loads(sys.argv[1])
env = protocol.read_environment(given["env"])
prev = given["prev"]
ips = commands._pod_ips(prev, env)
interface, bridge, peer = commands._host_interface(result.host_side_interfaces(prev))
record = endpoints.EndpointRecord.make(
    container_id=env.container_id, ifname=env.ifname, podNamespace=env.pod_namespace,
    podName=env.pod_name, podUID=env.pod_uid, ips=ips, hostInterface=interface,
    bridge=bridge, linkLocal=commands._link_local(env, ips, peer),
    netns=env.netns,
)
endpoints.write(given["state"], record)
"""


@pytest.fixture
def node(node_ns: str, tmp_path: Any) -> Node:
    return Node(node_ns, str(tmp_path))


def networks(node: Node, backend: str) -> tuple[Any, Any]:
    """(the whole chain, the same without podwall: what ran before the kill)."""
    full = cni_helpers.conflist([node.bridge([V4, V6]), node.podwall(backend=backend)])
    return full, cni_helpers.conflist(full["plugins"][:1])


def cni_env(command: str, pod: Pod) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod.attachment.container_id,
        "CNI_IFNAME": pod.attachment.ifname,
        "CNI_NETNS": pod.attachment.netns,
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": pod.attachment.cni_args(),
    }


def crashed(node: Node, primary: Any, pod_ns: str) -> Pod:
    """A pod whose podwall ADD died right after writing its record."""
    attachment = cni_helpers.attachment_for(pod_ns)
    pod = Pod(pod_ns, attachment, node.runner.add(primary, attachment))
    given = {"env": cni_env("ADD", pod), "prev": pod.result, "state": node.dir("state")}
    node.run([sys.executable, "-c", WRITE_RECORD, json.dumps(given)])
    return pod


def closed(pods: dict[str, Pod], name: str) -> dict[tuple[str, str, str], bool]:
    """Whatever passed between ``a`` and ``name`` (both ways): {} when closed."""
    found = faults.reach(pods, [("a", name), (name, "a")])
    return {key: ok for key, ok in found.items() if ok}


def serve(pod: Pod, servers: list[probe.Server]) -> Pod:
    servers.append(probe.serve(pod.netns, tcp=[faults.PORT]))
    return pod


def record_names(node: Node) -> list[str]:
    return sorted(os.listdir(endpoints.endpoints_dir(node.dir("state"))))


@pytest.mark.parametrize("backend", faults.BACKENDS)
def test_next_add_del_gc_and_agent_repair_a_crashed_add(
    node: Node, make_ns: Any, backend: str
) -> None:
    full, primary = networks(node, backend)
    servers: list[probe.Server] = []
    try:
        pods = {"a": serve(node.add(full, make_ns()), servers)}
        faults.Agent(node, backend).sync(faults.pod_docs(pods, {}))  # a is open
        pods["k1"] = serve(crashed(node, primary, make_ns()), servers)
        assert faults.pod_chains(node, backend, pods["k1"]) == []
        assert closed(pods, "k1"), "the crash state is not open: the test shows nothing"

        b = node.add(full, make_ns())  # the next ADD
        assert closed(pods, "k1") == {}, "after the next ADD"
        pods["k2"] = serve(crashed(node, primary, make_ns()), servers)
        node.delete(full, [b])  # the next DEL
        assert closed(pods, "k2") == {}, "after the next DEL"

        pods["k3"] = serve(crashed(node, primary, make_ns()), servers)
        gc = as_network(full).select(["podwall"], cni_version="1.1.0")
        keep = [pods[key].attachment for key in ("a", "k1", "k2", "k3")]
        node.runner.gc(gc, valid=keep, delete_stale=False)  # the next GC
        assert closed(pods, "k3") == {}, "after GC"
        node.runner.gc(gc, valid=keep[:2], delete_stale=False)  # k2, k3 unknown to the runtime
        assert faults.pod_chains(node, backend, pods["k2"]) == []
        assert faults.pod_chains(node, backend, pods["k3"]) == []
        assert len(record_names(node)) == 2

        pods["k4"] = serve(crashed(node, primary, make_ns()), servers)
        cfg = agent_config.AgentConfig(
            node="node-1", kubeconfig=None, backend=backend,
            state_dir=node.dir("state"), run_dir=node.dir("run"),
        )  # fmt: skip
        with entered(node.name):
            agent_node.repair_records(backend, cfg)  # the agent's start-up
        assert closed(pods, "k4") == {}, "after the agent's start-up repair"

        pods["k5"] = crashed(node, primary, make_ns())
        node.runner.delete(full, pods.pop("k5").attachment)  # the runtime's DEL of the crashed pod
        assert len(record_names(node)) == 3

        del pods["k2"], pods["k3"]
        faults.Agent(node, backend).sync(faults.pod_docs(pods, {}))  # no policy: all open
        for name in ("k1", "k4"):
            assert len(closed(pods, name)) == 4, f"{name} is not programmed"
        assert faults.duplicates(faults.podwall_text(node, backend)) == []
    finally:
        for server in servers:
            server.stop()
    node.delete(full, [pods["a"], pods["k1"], pods["k4"]])
    faults.Agent(node, backend).sync([])
    assert node.trace() == []


def children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(argv.replace(b"\0", b" ").decode(errors="replace"))
    return found


def test_add_killed_while_waiting_for_the_xtables_lock(
    node: Node, make_ns: Any, tmp_path: Path
) -> None:
    backend = "iptables-legacy"
    full, primary = networks(node, backend)
    a = node.add(full, make_ns())
    faults.Agent(node, backend).sync(faults.pod_docs({"a": a}, {}))  # a is open
    attachment = cni_helpers.attachment_for(make_ns())
    pod = Pod(attachment.netns.rsplit("/", 1)[1], attachment, node.runner.add(primary, attachment))
    plugin = as_network(full).plugins[1]
    config = cni_conf.plugin_config(as_network(full), plugin, prev_result=pod.result)
    lock_path = str(tmp_path / "xtables.lock")
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        env = {**cni_env("ADD", pod), "XTABLES_LOCKFILE": lock_path}
        argv = ["ip", "netns", "exec", node.name, sys.executable, "-m", "firewall_plugin"]
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        deadline = time.monotonic() + 30
        while not any("restore" in name for name in children(proc.pid)):
            assert proc.poll() is None, "the plugin ended without waiting for the lock"
            assert time.monotonic() < deadline, "the plugin never waited for the xtables lock"
            time.sleep(0.01)
        assert len(record_names(node)) == 2, "the record is written before the kernel"
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    finally:
        os.close(lock)  # the orphaned listing may run now: it writes nothing
    assert faults.pod_chains(node, backend, pod) == []
    servers = [probe.serve(p.netns, tcp=[faults.PORT]) for p in (a, pod)]
    try:
        pods = {"a": a, "k": pod}
        assert closed(pods, "k"), "the crash state is not open: the test shows nothing"
        b = node.add(full, make_ns())
        assert closed(pods, "k") == {}, "after the next ADD"
    finally:
        for server in servers:
            server.stop()
    again = as_network(full).select(["podwall"])
    node.runner.add(again, attachment, prev_result=pod.result)  # podwall's ADD retried: fine
    assert faults.pod_chains(node, backend, pod) != []
    node.delete(full, [a, b, pod])
    faults.Agent(node, backend).sync([])
    assert node.trace() == []
