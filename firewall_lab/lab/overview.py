"""``podwall lab status``: the lab as JSON (nodes, agents, pods with node and IPs).

Reads the state file, ``DIR/pods.json`` and the API (NodeFirewalls, Pods);
works on a half-built or stopped lab too (then with what is known).  Reads only.
"""

from __future__ import annotations

import os
from typing import Any

from firewall_lab import netns
from firewall_lab.lab import state, teardown
from firewall_lab.lab.client import Client
from firewall_lab.lab.errors import LabError
from firewall_lab.lab.ops import running_pods

Json = dict[str, Any]


def status(directory: str) -> Json:
    directory = os.path.abspath(directory)
    recorded = state.load(directory)
    layout = recorded.layout(directory)
    alive = teardown.ours(recorded.pids.get("lab", 0), directory)
    api = f"http://127.0.0.1:{recorded.api_port}" if recorded.api_port else ""
    firewalls: dict[str, Json] = {}
    phases: dict[str, str] = {}
    if alive and recorded.phase == "ready":
        try:
            client = Client(api, timeout=5)
            for item in client.list("NodeFirewall").get("items") or []:
                firewalls[item["metadata"]["name"]] = item.get("status") or {}
            for pod in client.list("Pod").get("items") or []:
                meta = pod["metadata"]
                phases[f"{meta['namespace']}/{meta['name']}"] = str(
                    (pod.get("status") or {}).get("phase") or "Pending"
                )
        except LabError:
            pass
    nodes = []
    for node in layout.node_list():
        pid = recorded.pids.get(f"agent/{node.name}", 0)
        marker = os.path.join(directory, "nodes", node.name)
        nodes.append(
            {
                "name": node.name,
                "netns": node.netns,
                "netnsExists": netns.exists(node.netns),
                "ip": node.ip4,
                "podCIDRs": [node.pod_cidr4] + ([node.pod_cidr6] if layout.ipv6 else []),
                "agent": {
                    "kind": recorded.agents.get(node.name, "none"),
                    "pid": pid,
                    "running": teardown.ours(pid, marker),
                    "status": firewalls.get(node.name, {}),
                },
            }
        )
    pods = [
        {
            "name": key,
            "node": pod["node"],
            "ips": pod["ips"],
            "netns": pod["netns"],
            "phase": phases.get(key, "Running"),
        }
        for key, pod in sorted(running_pods(layout).items())
    ]
    return {
        "dir": directory,
        "id": recorded.lab_id,
        "phase": recorded.phase if alive or recorded.phase == "failed" else "stopped",
        "error": recorded.error,
        "api": api,
        "kubeconfig": layout.kubeconfig,
        "cni": recorded.cni,
        "ipv6": recorded.ipv6,
        "nodes": nodes,
        "pods": pods,
    }


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def table(found: Json) -> str:
    """``status`` as text: a head line, then a table of nodes and one of pods."""
    head = (
        f"lab {found['dir']}: {found['phase']}"
        + (f" ({found['error']})" if found.get("error") else "")
        + f", cni {found['cni']}{', dual-stack' if found['ipv6'] else ''}"
        + f", api {found['api'] or '-'}"
    )
    nodes = [["NODE", "AGENT", "RUNNING", "BACKEND", "ENDPOINTS", "RULES", "LAST SYNC", "ERROR"]]
    for node in found["nodes"]:
        agent, status_ = node["agent"], node["agent"]["status"]
        nodes.append(
            [
                node["name"],
                agent["kind"],
                "yes" if agent["running"] else "no",
                str(status_.get("backend", "-")),
                str(status_.get("endpoints", "-")),
                str(status_.get("rules", "-")),
                str(status_.get("lastSync", "-")),
                str(status_.get("lastError") or "-")[:60],
            ]
        )
    pods = [["POD", "NODE", "PHASE", "IPS"]]
    pods += [[p["name"], p["node"], p["phase"], ",".join(p["ips"]) or "-"] for p in found["pods"]]
    lines = [head, "", *_columns(nodes)]
    lines += ["", *_columns(pods)] if len(pods) > 1 else ["", "no pods"]
    return "\n".join(lines) + "\n"
