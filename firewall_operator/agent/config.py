"""The agent's settings: command-line flags over the node's podwall conflist entry.

``from_args(args)`` reads the podwall entry of the primary conflist in
``--cni-conf-dir`` (``firewall_plugin.conflist.read_entry``), validates it with
the plugin's own parser, and lets ``--backend``, ``--state-dir`` and
``--run-dir`` override it.  No kopf, no kernel access here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from firewall_operator.agent.errors import AgentConfigError
from firewall_plugin import config as plugin_config
from firewall_plugin import conflist
from firewall_plugin.errors import PodwallError

DEFAULT_NFLOG_GROUP = 0x5057  # 20567, "PW" in ASCII
DEFAULT_LOG_RATE = "10/minute"


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
    listen_address: str = "0.0.0.0"
    cleanup: bool = False
    verbose: bool = False
    log_format: str = "text"  # the agent's own log: text or json (logformat)
    nflog_group: int = 0x5057  # DEFAULT_NFLOG_GROUP: the group podwall's log rules use
    traffic_log: str = "-"  # where denied-traffic JSON lines go: -, a file, or off
    log_denied: bool = False  # log every drop podwall causes on this node (the compiler's)
    log_rate: str = "10/minute"  # DEFAULT_LOG_RATE: per pod, in the kernel (the compiler's)
    log_burst: int = 5
    upstream_policy: bool = False  # also read the policy.networking.k8s.io kinds
    cut_denied_flows: bool = False  # forget the conntrack entries of pods whose rules changed


def read_plugin_config(conf_dir: str) -> plugin_config.PluginConfig | None:
    """The node's podwall entry, validated; None when there is none."""
    try:
        entry = conflist.read_entry(conf_dir)
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
        listen_address=str(getattr(args, "listen_address", "0.0.0.0") or "0.0.0.0"),
        cleanup=bool(args.cleanup),
        verbose=bool(args.verbose),
        **_logging(args),
        upstream_policy=bool(getattr(args, "upstream_policy", False)),
        cut_denied_flows=bool(getattr(args, "cut_denied_flows", False)),
    )


def _logging(args: argparse.Namespace) -> dict[str, Any]:
    """The logging settings (flags a caller may lack keep their defaults)."""
    found: dict[str, Any] = {}
    for name in ("log_format", "nflog_group", "traffic_log", "log_denied", "log_rate", "log_burst"):
        value = getattr(args, name, None)
        if value is not None:
            found[name] = value
    group = found.get("nflog_group", DEFAULT_NFLOG_GROUP)
    if not 0 <= int(group) <= 0xFFFF:
        raise AgentConfigError(f"--nflog-group {group}: must be 0-65535")
    rate = str(found.get("log_rate", DEFAULT_LOG_RATE))
    number, _, unit = rate.partition("/")
    if not number.isdigit() or int(number) < 1 or unit not in ("second", "minute", "hour"):
        raise AgentConfigError(f"--log-rate {rate}: want N/second, N/minute or N/hour")
    return found
