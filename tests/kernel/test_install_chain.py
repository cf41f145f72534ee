"""A conflist written by ``podwall cni install`` runs through the real CNI chain.

The primary config is containerd's bridge + portmap shape; install chains
podwall into it and writes the launcher; the lab's conflist runner then runs
ADD and DEL with the reference plugins inside a throwaway node namespace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from firewall_install import conf as install
from firewall_install import launcher
from firewall_lab.cni_runner import Runner, as_network
from firewall_plugin import conflist
from tests.kernel.cni_helpers import REFERENCE_DIR, Node, attachment_for, portmap


def test_installed_conflist_adds_and_deletes_a_pod(
    node_ns: str, make_ns: Any, tmp_path: Path
) -> None:
    node = Node(node_ns, str(tmp_path / "node"))
    bin_dir, conf = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir()
    conf.mkdir()
    for name in os.listdir(REFERENCE_DIR):
        os.symlink(os.path.join(REFERENCE_DIR, name), bin_dir / name)
    primary = {
        "cniVersion": "1.0.0",
        "name": "containerd-net",
        "plugins": [node.bridge(), portmap()],
    }
    (conf / "10-containerd-net.conflist").write_text(json.dumps(primary))
    entry = install.build_entry({"stateDir": node.dir("state"), "runDir": node.dir("run")})
    launcher.install_executable(str(bin_dir))
    install.install_conf(str(conf), entry)
    runner = Runner(
        cni_path=[str(bin_dir)], cache_dir=node.dir("cache"), exec_netns=node_ns, timeout=60
    )
    network = as_network(str(conf / conflist.primary_name(str(conf))))
    attachment = attachment_for(make_ns(), capability_args={"portMappings": []})
    result = runner.add(network, attachment)
    assert result["ips"], result
    assert any("PODWALL" in line for line in node.trace()), "podwall programmed the pod"
    runner.delete(network, attachment)
    assert node.trace() == []
