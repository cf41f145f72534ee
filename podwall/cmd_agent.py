"""``podwall agent``: run the per-node kopf agent.

Flags only; the agent itself lives in ``firewall_operator.agent`` and is
imported when this command runs (kopf costs ~300 ms to import).
"""

from __future__ import annotations

import argparse
import os
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get

    def flag(name: str) -> bool:
        return env(name, "") in ("1", "true")

    parser.add_argument(
        "--node",
        default=env("NODE_NAME"),
        help="this node's name (default: $NODE_NAME)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster config)",
    )
    parser.add_argument(
        "--cni-conf-dir",
        default="/etc/cni/net.d",
        help="where the podwall conflist entry is read from (stateDir, runDir, backend...)",
    )
    parser.add_argument("--backend", default=None, help="override the conflist's backend")
    parser.add_argument("--state-dir", default=None, help="override the conflist's stateDir")
    parser.add_argument("--run-dir", default=None, help="override the conflist's runDir")
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=60.0,
        help="full resync period that repairs drift (default 60)",
    )
    parser.add_argument(
        "--debounce-ms",
        type=int,
        default=100,
        help="how long events are collected before a sync (default 100)",
    )
    parser.add_argument(
        "--watch-stall-seconds",
        type=float,
        default=12.0,
        help="a watch that brings no event and no bookmark for this long is dead: "
        "list again (default 12; at least 3)",
    )
    parser.add_argument(
        "--pods-from",
        default=env("PODWALL_PODS_FROM"),
        help="list and watch pods at this podwall relay URL instead of the API server "
        "(default: $PODWALL_PODS_FROM; see docs/scale.md)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=9101,
        help="Prometheus metrics port, 0 to disable (default 9101)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=9102,
        help="kopf liveness endpoint port (/healthz), 0 to disable (default 9102)",
    )
    parser.add_argument(
        "--listen-address",
        default=env("PODWALL_LISTEN_ADDRESS", "0.0.0.0"),
        help="address the metrics and health endpoints listen on (default 0.0.0.0; "
        "127.0.0.1 keeps them off the network; $PODWALL_LISTEN_ADDRESS)",
    )
    parser.add_argument(
        "--upstream-policy",
        action="store_true",
        default=flag("PODWALL_UPSTREAM_POLICY"),
        help="also enforce ClusterNetworkPolicy, AdminNetworkPolicy and "
        "BaselineAdminNetworkPolicy (policy.networking.k8s.io; needs their CRDs "
        "and RBAC: deploy/components/upstream-policy) (default: $PODWALL_UPSTREAM_POLICY)",
    )
    parser.add_argument(
        "--cut-denied-flows",
        action="store_true",
        default=flag("PODWALL_CUT_DENIED_FLOWS"),
        help="when a pod's rules change, delete the conntrack entries of its addresses, so "
        "that established flows the new rules deny stop (allowed TCP flows resume; flows "
        "through a Service may be reset) (default off; $PODWALL_CUT_DENIED_FLOWS)",
    )
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="remove every podwall chain and set of this node, then exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _logging(parser)


def _logging(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logs")
    group.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="the agent's own log lines"
    )
    group.add_argument(
        "--traffic-log",
        default="-",
        metavar="PATH",
        help="where the denied-traffic JSON lines go: - (stdout, default), a file, or off",
    )
    group.add_argument(
        "--nflog-group",
        type=int,
        default=0x5057,
        metavar="N",
        help="the NFLOG group podwall's log rules use (default 20567, 'PW')",
    )
    group.add_argument(
        "--log-denied",
        action="store_true",
        help="log every packet podwall drops on this node (else: policies that ask for it)",
    )
    group.add_argument(
        "--log-rate",
        default="10/minute",
        metavar="N/UNIT",
        help="per pod, at most this many logged packets (second, minute, hour; default 10/minute)",
    )
    group.add_argument(
        "--log-burst", type=int, default=5, metavar="N", help="above the rate (default 5)"
    )


def run(args: argparse.Namespace) -> int:
    if not args.node and not args.cleanup:
        print("podwall agent: --node (or $NODE_NAME) is required")
        return 2
    # The agent never uses the Kubernetes Python client; kopf imports it when it
    # is installed (the test extra installs it) to recognise its model classes,
    # which costs the agent ~20 MiB of RSS.  A None entry makes that import fail
    # as if it were not installed, which kopf supports.
    if "kubernetes" not in sys.modules:
        sys.modules["kubernetes"] = None  # type: ignore[assignment]
    from firewall_operator.agent import main as agent_main

    status: int = agent_main.run(args)
    return status
