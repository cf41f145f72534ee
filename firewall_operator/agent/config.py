"""The agent's settings: command-line flags over the node's podwall conflist entry.

``from_args(args)`` reads the podwall entry of the primary conflist in
``--cni-conf-dir`` (``firewall_plugin.install.read_entry``), validates it with
the plugin's own parser, and lets ``--backend``, ``--state-dir`` and
``--run-dir`` override it.  No kopf, no kernel access here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from firewall_operator.agent.errors import AgentConfigError
from firewall_plugin import config as plugin_config
from firewall_plugin import install
from firewall_plugin.errors import PodwallError


@dataclass(frozen=True, slots=True)
class AgentConfig:
    node: str
    kubeconfig: str | None
    backend: str = "auto"
    state_dir: str = "/var/lib/podwall"
    run_dir: str = "/run/podwall"
    pod_default: str = "deny"
    deny_action: str = "drop"
    resync_seconds: float = 60.0
    debounce_seconds: float = 0.1
    watch_stall_seconds: float = 12.0
    pods_from: str = ""  # a podwall relay's URL: pods are listed and watched there
    metrics_port: int = 0
    health_port: int = 0
    cleanup: bool = False
    verbose: bool = False


def read_plugin_config(conf_dir: str) -> plugin_config.PluginConfig | None:
    """The node's podwall entry, validated; None when there is none."""
    try:
        entry = install.read_entry(conf_dir)
        if entry is None:
            return None
        data: dict[str, Any] = {"name": "podwall", "cniVersion": "1.0.0", **entry}
        return plugin_config.parse(data)
    except PodwallError as exc:
        raise AgentConfigError(f"podwall entry in {conf_dir}: {exc}") from exc


def from_args(args: argparse.Namespace) -> AgentConfig:
    """Flags over the conflist entry; with --backend, --state-dir and --run-dir
    all given, a missing or unreadable conflist is not needed."""
    try:
        plugin = read_plugin_config(args.cni_conf_dir)
    except AgentConfigError:
        if not (args.backend and args.state_dir and args.run_dir):
            raise
        plugin = None
    base = AgentConfig(node=args.node or "", kubeconfig=args.kubeconfig)
    backend, state_dir, run_dir = base.backend, base.state_dir, base.run_dir
    pod_default, deny_action = base.pod_default, base.deny_action
    if plugin is not None:
        backend, state_dir, run_dir = plugin.backend, plugin.state_dir, plugin.run_dir
        pod_default, deny_action = plugin.pod_default, plugin.deny_action
    return AgentConfig(
        node=args.node or "",
        kubeconfig=args.kubeconfig,
        backend=args.backend or backend,
        state_dir=args.state_dir or state_dir,
        run_dir=args.run_dir or run_dir,
        pod_default=pod_default,
        deny_action=deny_action,
        resync_seconds=max(float(args.resync_seconds), 1.0),
        debounce_seconds=max(int(args.debounce_ms), 0) / 1000,
        watch_stall_seconds=max(float(args.watch_stall_seconds), 3.0),
        pods_from=str(args.pods_from or ""),
        metrics_port=int(args.metrics_port),
        health_port=int(args.health_port),
        cleanup=bool(args.cleanup),
        verbose=bool(args.verbose),
    )
