"""Builders and a node harness for tests that run real CNI chains.

* ``make_bin_dir(path)``: a CNI bin dir with a symlink to every reference
  plugin of ``/usr/lib/cni`` and a ``podwall`` executable (this interpreter,
  ``-I -S``, running ``firewall_plugin.cni.main()``).
* Conflist builders: ``bridge``, ``ptp``, ``portmap``, ``bandwidth``,
  ``reference_firewall``, ``podwall`` entries and ``conflist(...)``.
* ``Node``: a node netns with its own state/run/cache/IPAM folders, a
  ``Runner`` executing plugins inside it, pod attach helpers and ``trace()``
  (every podwall trace in iptables/ip6tables nft and legacy, ipset, records).

Nothing here is a test; nothing here touches the machine's own namespace.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import site
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import firewall_plugin
from firewall_lab import netns
from firewall_lab.cni_conf import JSON, Attachment, result_ips
from firewall_lab.cni_runner import NetworkConfig, Runner, as_network
from firewall_plugin.backends import restore
from firewall_plugin.backends.base import KernelTable

REFERENCE_DIR = os.environ.get("PODWALL_CNI_PATH", "/usr/lib/cni")
T = TypeVar("T")
_ids = itertools.count(1)


def make_bin_dir(path: str) -> str:
    """Fill ``path`` with reference plugin symlinks and the podwall launcher."""
    os.makedirs(path, exist_ok=True)
    for name in sorted(os.listdir(REFERENCE_DIR)):
        os.symlink(os.path.join(REFERENCE_DIR, name), os.path.join(path, name))
    root = os.path.dirname(os.path.dirname(os.path.abspath(firewall_plugin.__file__)))
    paths = [root, *(p for p in site.getsitepackages() if os.path.isdir(p))]
    launcher = os.path.join(path, "podwall")
    with open(launcher, "w") as handle:
        handle.write(
            f"#!{sys.executable} -IS\n"
            "import sys\n"
            f"sys.path[:0] = {paths!r}\n"
            "from firewall_plugin.cni import main\n"
            "sys.exit(main())\n"
        )
    os.chmod(launcher, 0o755)
    return path


# --- conflist builders -------------------------------------------------------


def host_local(data_dir: str, subnets: Sequence[str]) -> JSON:
    return {
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [[{"subnet": subnet}] for subnet in subnets],
    }


def bridge(*, data_dir: str, subnets: Sequence[str], name: str = "cni0") -> JSON:
    return {
        "type": "bridge",
        "bridge": name,
        "isGateway": True,
        "ipMasq": False,
        "ipam": host_local(data_dir, subnets),
    }


def ptp(*, data_dir: str, subnets: Sequence[str]) -> JSON:
    return {"type": "ptp", "ipMasq": False, "ipam": host_local(data_dir, subnets)}


def portmap() -> JSON:
    return {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False}


def bandwidth() -> JSON:
    return {"type": "bandwidth", "capabilities": {"bandwidth": True}}


def reference_firewall() -> JSON:
    return {"type": "firewall", "backend": "iptables"}


def podwall(
    *,
    state_dir: str,
    run_dir: str,
    backend: str = "iptables-nft",
    pod_default: str = "deny",
    **extra: Any,
) -> JSON:
    """A podwall entry that never waits for an agent (there is none here)."""
    return {
        "type": "podwall",
        "backend": backend,
        "podDefault": pod_default,
        "stateDir": state_dir,
        "runDir": run_dir,
        "agentTimeoutMs": 0,
        **extra,
    }


def conflist(plugins: Sequence[JSON], *, name: str = "podnet", version: str = "1.0.0") -> JSON:
    return {"cniVersion": version, "name": name, "plugins": list(plugins)}


# --- the node harness --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod attached through a chain: its netns, attachment and result."""

    netns: str
    attachment: Attachment
    result: JSON

    @property
    def ips(self) -> list[str]:
        return result_ips(self.result)

    def ip(self, family: str = "ipv4") -> str:
        wanted = [ip for ip in self.ips if (":" in ip) == (family == "ipv6")]
        assert wanted, f"pod {self.netns} has no {family} address: {self.ips}"
        return wanted[0]


def attachment_for(
    pod_ns: str, *, name: str | None = None, capability_args: JSON | None = None
) -> Attachment:
    """A kubelet-like attachment of netns ``pod_ns`` (unique container ID)."""
    container_id = f"ctr{next(_ids):04d}{pod_ns.replace('-', '')}"
    return Attachment(
        container_id=container_id,
        ifname="eth0",
        netns=netns.path(pod_ns),
        capability_args=capability_args or {},
        args={
            "K8S_POD_NAMESPACE": "default",
            "K8S_POD_NAME": name or pod_ns,
            "K8S_POD_UID": f"uid-{container_id}",
            "K8S_POD_INFRA_CONTAINER_ID": container_id,
        },
    )


def parallel(fn: Callable[[T], Any], items: Iterable[T], *, workers: int = 16) -> list[Any]:
    """``fn`` over ``items`` in a thread pool; results in order, first error raised."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


@dataclass
class Node:
    """A throwaway node: netns, bin dir, podwall folders and a runner."""

    name: str
    root: str
    runner: Runner = field(init=False)

    def __post_init__(self) -> None:
        for sub in ("state", "run", "cache", "ipam"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        bin_dir = make_bin_dir(os.path.join(self.root, "bin"))
        self.runner = Runner(
            cni_path=[bin_dir], cache_dir=self.dir("cache"), exec_netns=self.name, timeout=60
        )

    def dir(self, sub: str) -> str:
        return os.path.join(self.root, sub)

    def podwall(self, **settings: Any) -> JSON:
        """A podwall entry using this node's state and run folders."""
        return podwall(state_dir=self.dir("state"), run_dir=self.dir("run"), **settings)

    def bridge(self, subnets: Sequence[str] = ("10.88.0.0/24",), **kw: Any) -> JSON:
        return bridge(data_dir=self.dir("ipam"), subnets=subnets, **kw)

    def ptp(self, subnets: Sequence[str] = ("10.89.0.0/24",)) -> JSON:
        return ptp(data_dir=self.dir("ipam"), subnets=subnets)

    def add(
        self, net: NetworkConfig | JSON, pod_ns: str, *, capability_args: JSON | None = None
    ) -> Pod:
        attachment = attachment_for(pod_ns, capability_args=capability_args)
        return Pod(pod_ns, attachment, self.runner.add(as_network(net), attachment))

    def add_many(
        self,
        net: NetworkConfig | JSON,
        pod_namespaces: Sequence[str],
        *,
        capability_args: JSON | None = None,
    ) -> list[Pod]:
        network = as_network(net)
        if not pod_namespaces:
            return []
        # The first ADD alone: the reference plugins create their shared state
        # (the bridge, the `firewall` plugin's CNI-FORWARD chain) check-then-create
        # and fail with "File exists" when two first ADDs race on a fresh node.
        first = self.add(network, pod_namespaces[0], capability_args=capability_args)
        rest = parallel(
            lambda pod_ns: self.add(network, pod_ns, capability_args=capability_args),
            pod_namespaces[1:],
        )
        return [first, *rest]

    def delete(self, net: NetworkConfig | JSON, pods: Iterable[Pod]) -> None:
        """DEL every pod in parallel (the runner's cached results)."""
        network = as_network(net)
        parallel(lambda pod: self.runner.delete(network, pod.attachment), list(pods))

    def run(self, argv: Sequence[str], *, check: bool = True) -> str:
        return netns.run(self.name, argv, check=check).stdout

    def table(self, variant: str, family: str) -> KernelTable:
        """podwall's chains and FORWARD of one iptables variant and family."""
        save = restore.binary(variant, family, "save")  # type: ignore[arg-type]
        return restore.parse_save(self.run([save, "-t", "filter"]))

    def trace(self) -> list[str]:
        """Every podwall trace on the node: rules and chains of both variants
        and families, podwall's nftables tables, ipsets, endpoint records.
        Empty means clean."""
        found: list[str] = []
        for variant, family in itertools.product(("nft", "legacy"), ("ipv4", "ipv6")):
            save = restore.binary(variant, family, "save")  # type: ignore[arg-type]
            text = self.run([save], check=False)
            found += [f"{save}: {line}" for line in text.splitlines() if "podwall" in line.lower()]
        for table in ("inet", "bridge"):
            text = self.run(["nft", "list", "table", table, "podwall"], check=False)
            found += [f"nft {table}: {line}" for line in text.splitlines() if line.strip()]
        sets = self.run(["ipset", "list", "-n"]).split()
        found += [f"ipset: {name}" for name in sets if "podwall" in name.lower()]
        records = os.path.join(self.dir("state"), "endpoints")
        if os.path.isdir(records):
            found += [f"record: {entry}" for entry in sorted(os.listdir(records))]
        return found
