"""Run the podwall CNI plugin as a real subprocess inside a node namespace.

Shared by the plugin's kernel tests: ``invoke`` runs ``.venv/bin/python -m
firewall_plugin`` through ``ip netns exec`` with CNI variables and a config on
stdin; ``snapshot`` captures everything an invocation could change (the four
iptables-save outputs and the files under the state and run folders).
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firewall_lab import netns

SAVE_TOOLS = (
    "iptables-nft-save",
    "ip6tables-nft-save",
    "iptables-legacy-save",
    "ip6tables-legacy-save",
)


@dataclass
class Outcome:
    """One plugin run: exit status, stdout parsed as JSON (or None), stderr."""

    status: int
    output: Any
    stderr: str

    @property
    def code(self) -> int | None:
        return self.output.get("code") if isinstance(self.output, dict) else None


def conf(tmp: Path, prev: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    """A podwall conflist entry with state and run folders under ``tmp``."""
    data: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "podnet",
        "type": "podwall",
        "backend": "iptables-nft",
        "stateDir": str(tmp / "state"),
        "runDir": str(tmp / "run"),
        "agentTimeoutMs": 500,
    }
    if prev is not None:
        data["prevResult"] = prev
    data.update(settings)
    return data


def host_links(node: str, host: tuple[str, ...]) -> None:
    """Make the host-side interfaces a prevResult names exist in ``node``: a
    veth end for each non-bridge name (a port of the bridge, when one is
    named), as a primary CNI would have left them."""
    bridges = [name for name in host if _is_bridge(node, name)]
    for name in host:
        if name in bridges:
            continue
        if netns.run(node, ["ip", "link", "show", name], check=False).returncode != 0:
            peer = f"{name[:12]}p"
            netns.run(node, ["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
            netns.run(node, ["ip", "link", "set", name, "up"])
        if bridges:
            netns.run(node, ["ip", "link", "set", name, "master", bridges[0]])


def _is_bridge(node: str, name: str) -> bool:
    done = netns.run(node, ["ip", "-d", "link", "show", name], check=False)
    return done.returncode == 0 and " bridge " in done.stdout.replace("\n", " ")


def default_host(ips: tuple[str, ...]) -> tuple[str, ...]:
    """One host-side veth per distinct set of pod addresses."""
    return (f"pv{zlib.crc32(' '.join(ips).encode()):08x}",)


def prev_result(
    node: str, *ips: str, version: str = "1.0.0", host: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """A hand-written prevResult: host-side interfaces (made to exist, see
    ``host_links``), then eth0 holding ``ips``."""
    host = default_host(ips) if host is None else host
    host_links(node, host)
    interfaces: list[dict[str, Any]] = [{"name": name} for name in host]
    interfaces.append({"name": "eth0", "sandbox": netns.path(node)})
    index = len(interfaces) - 1
    entries = [{"address": ip, "interface": index} for ip in ips]
    if version.startswith("0."):
        entries = [
            {"version": "6" if ":" in ip else "4", **e} for ip, e in zip(ips, entries, strict=True)
        ]
    return {"cniVersion": version, "interfaces": interfaces, "ips": entries}


def invoke(
    node: str,
    command: str,
    config: dict[str, Any] | str | None,
    *,
    container_id: str = "c1",
    ifname: str = "eth0",
    netns_path: str | None = None,
    args: str = "K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1;K8S_POD_UID=uid-1",
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> Outcome:
    """Run the plugin once in ``node``; ``drop`` removes CNI variables."""
    variables = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_IFNAME": ifname,
        "CNI_NETNS": netns.path(node) if netns_path is None else netns_path,
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": args,
        **(env or {}),
    }
    for name in drop:
        variables.pop(name, None)
    text = config if isinstance(config, str) else json.dumps(config or {})
    done = netns.run(
        node, [sys.executable, "-m", "firewall_plugin"], input=text, env=variables, check=False
    )
    try:
        output = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        output = done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    return Outcome(done.returncode, output, done.stderr)


def save(node: str, tool: str) -> str:
    """The filter table from ``tool``, without comment lines (they hold
    timestamps).  Other tables are left out: libiptc instantiates every legacy
    table it looks at, empty."""
    text = netns.run(node, [tool, "-t", "filter"]).stdout
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def nft_tables(node: str) -> str:
    """podwall's nftables tables (``nft -s list``: without counter values)."""
    parts = []
    for family in ("inet", "bridge"):
        done = netns.run(node, ["nft", "-s", "list", "table", family, "podwall"], check=False)
        if done.returncode == 0:
            parts.append(done.stdout)
    return "".join(parts)


def kernel_text(node: str, backend: str) -> str:
    """Everything ``backend`` wrote for podwall, as its tools print it."""
    if backend in ("nftables", "auto"):
        return nft_tables(node)
    variant = "nft" if backend == "iptables-nft" else "legacy"
    return save(node, f"iptables-{variant}-save") + save(node, f"ip6tables-{variant}-save")


def snapshot(node: str, *folders: Path) -> dict[str, str]:
    """iptables-save of all four variants, podwall's nftables tables, plus
    every file below ``folders``."""
    shot = {tool: save(node, tool) for tool in SAVE_TOOLS}
    shot["nft"] = nft_tables(node)
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if path.is_file():
                shot[str(path)] = path.read_text()
    return shot


def prime(node: str) -> str:
    """Give ``node`` a filter table in all four variants, with one foreign
    FORWARD rule, as a node running kube-proxy or a primary CNI would have."""
    for tool in ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy"):
        netns.run(
            node, [tool, "-A", "FORWARD", "-m", "comment", "--comment", "other", "-j", "ACCEPT"]
        )
    return node


def podwall_lines(node: str) -> list[str]:
    """Every line mentioning podwall in any of the four saves or in nftables."""
    found = [
        f"{tool}: {line}"
        for tool in SAVE_TOOLS
        for line in save(node, tool).splitlines()
        if "podwall" in line.lower()
    ]
    return found + [f"nft: {line}" for line in nft_tables(node).splitlines()]
