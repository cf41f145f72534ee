"""``podwall relay``: serve the cluster's pods, slim, to many agents (docs/scale.md).

Flags only; the relay lives in ``firewall_operator.relay`` and is imported
when this command runs.
"""

from __future__ import annotations

import argparse
import os
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster config)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to serve on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=9103, help="port to serve on (default 9103)")
    parser.add_argument(
        "--watch-stall-seconds",
        type=float,
        default=12.0,
        help="a watch of the API server that brings nothing for this long is dead (default 12)",
    )
    parser.add_argument(
        "--bookmark-seconds",
        type=float,
        default=5.0,
        help="heartbeat bookmarks to agents at least this often (default 5)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    if "kubernetes" not in sys.modules:  # unused; kopf imports it when present (see cmd_agent)
        sys.modules["kubernetes"] = None  # type: ignore[assignment]
    from firewall_operator.relay import server

    status: int = server.run(args)
    return status
