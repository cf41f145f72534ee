"""``podwall explain``: verdicts and reachability matrices from YAML files.

    podwall explain -f FILE... --from NS/POD --to NS/POD --port 80/TCP [-o text|json]
    podwall explain -f FILE... --matrix --port P --protocol TCP|UDP|SCTP [-o json|table]

Answers from the same semantics as the compiler (``firewall_operator``),
offline, for NetworkPolicy, FirewallRule and the upstream cluster policies
alike (Node objects give ``nodes`` peers their addresses).  Problems found in
the input go to stderr as warnings.  Exit status: 0 answered, 1 input files
unreadable, 2 bad arguments (unknown pod, bad port).
"""

from __future__ import annotations

import argparse
import json
import sys

PROTOCOLS = ("TCP", "UDP", "SCTP")


class UsageError(Exception):
    """Arguments that cannot be answered (exit 2)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        nargs="+",
        required=True,
        metavar="FILE",
        help="YAML/JSON files or folders (Namespace, Pod, Node, NetworkPolicy, FirewallRule, "
        "ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)",
    )
    parser.add_argument("--from", dest="source", metavar="NS/POD", help="the sending pod")
    parser.add_argument("--to", dest="destination", metavar="NS/POD", help="the receiving pod")
    parser.add_argument("--port", help="PORT or PORT/PROTOCOL, e.g. 80/TCP")
    parser.add_argument("--protocol", type=str.upper, choices=PROTOCOLS, help="default TCP")
    parser.add_argument("--matrix", action="store_true", help="print the pod-to-pod truth table")
    parser.add_argument(
        "--family",
        choices=("ipv4", "ipv6"),
        default="ipv4",
        help="address family for ipBlock peers (default ipv4)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "table", "json"),
        help="text (pair) or table (matrix) by default",
    )


def parse_port(text: str | None, protocol: str | None) -> tuple[int, str]:
    """``80``, ``80/TCP`` → (80, "TCP"); ``--protocol`` must agree."""
    if not text:
        raise UsageError("--port is required")
    number, _, named = text.partition("/")
    named = named.upper()
    if named and named not in PROTOCOLS:
        raise UsageError(f"--port {text}: protocol must be one of {', '.join(PROTOCOLS)}")
    if named and protocol and named != protocol:
        raise UsageError(f"--port {text} disagrees with --protocol {protocol}")
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise UsageError(f"--port {text}: not a port number 1-65535")
    return int(number), named or protocol or "TCP"


def _answer(args: argparse.Namespace) -> str:
    from firewall_operator import evaluate, explain, loading

    port, protocol = parse_port(args.port, args.protocol)
    snapshot = loading.load_snapshot(path for group in args.files for path in group)
    evaluator = evaluate.Evaluator(snapshot, family=args.family)
    for problem in evaluator.planner.problems():
        print(f"podwall explain: {problem}", file=sys.stderr)
    if args.matrix:
        if args.source or args.destination:
            raise UsageError("--matrix takes no --from/--to")
        matrix = evaluator.matrix(port, protocol)
        if args.output == "json":
            return json.dumps(matrix, indent=2) + "\n"
        return explain.matrix_table(matrix)
    pods = {pod.key: pod for pod in snapshot.pods}
    for flag, value in (("--from", args.source), ("--to", args.destination)):
        if not value:
            raise UsageError(f"{flag} NS/POD is required (or use --matrix)")
        if value not in pods:
            raise UsageError(f"{flag} {value}: no such pod in the input files")
    verdict = evaluator.verdict(pods[args.source], pods[args.destination], port, protocol)
    if args.output == "json":
        return json.dumps(explain.verdict_json(verdict), indent=2) + "\n"
    return explain.verdict_text(verdict)


def run(args: argparse.Namespace) -> int:
    from firewall_operator.errors import OperatorError

    try:
        sys.stdout.write(_answer(args))
    except UsageError as exc:
        print(f"podwall explain: {exc}", file=sys.stderr)
        return 2
    except OperatorError as exc:
        print(f"podwall explain: {exc}", file=sys.stderr)
        return 1
    return 0
