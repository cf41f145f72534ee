"""``podwall explain``: verdicts and reachability matrices, from files or a live cluster.

    podwall explain [-f FILE|-]... [--kubeconfig F] [--context C]
                    --from ENDPOINT --to ENDPOINT --port P[/PROTO] [--family F] [-o text|json]
    podwall explain [-f FILE|-]... --matrix --port P[/PROTO] [--family F] [-o table|json]

ENDPOINT is a pod (NS/NAME), an IP address or a CIDR.  Without ``-f`` the
objects come from the cluster of the kubeconfig (``--kubeconfig``,
``$KUBECONFIG``, ``~/.kube/config``, or in-cluster), so ``--kubeconfig
DIR/kubeconfig`` explains a lab.  Answers from the same semantics as the
compiler (``firewall_operator``), for NetworkPolicy, FirewallRule and the
upstream cluster policies alike (Node objects give ``nodes`` peers their
addresses).  Problems found in the input go to stderr.  Exit status (like
``kubectl auth can-i``): 0 allowed (every family; a matrix: answered), 1
denied, 2 usage errors and input that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from podwall import cli

ALLOWED, DENIED, USAGE = 0, 1, 2


class UsageError(Exception):
    """Arguments that cannot be answered (exit 2)."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        nargs="+",
        default=[],
        metavar="FILE",
        help="YAML/JSON files or folders (Namespace, Pod, Node, NetworkPolicy, FirewallRule, "
        "ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy); "
        "- reads standard input; without -f the live cluster is read",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig of the cluster (default $KUBECONFIG)")
    parser.add_argument("--context", help="the kubeconfig context (default: its current one)")
    parser.add_argument(
        "--from", dest="source", metavar="ENDPOINT", help="the sender: NS/POD, an IP or a CIDR"
    )
    parser.add_argument(
        "--to", dest="destination", metavar="ENDPOINT", help="the receiver: NS/POD, an IP or a CIDR"
    )
    cli.add_port(parser, required=False, what="the destination port")
    parser.add_argument("--matrix", action="store_true", help="print the pod-to-pod truth table")
    parser.add_argument(
        "--family",
        choices=("ipv4", "ipv6"),
        help="answer in this address family only (default: the families the pods have)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "table", "json"),
        help="text (a pair) or table (a matrix) by default; json for scripts",
    )


def _documents(args: argparse.Namespace) -> list[object]:
    from firewall_operator import kubeconfig, live, loading

    paths = [path for group in args.files for path in group]
    if not paths:
        info = kubeconfig.connection(args.kubeconfig, args.context)
        found, notes = live.read(info)
        for note in notes:
            print(f"podwall explain: note: {note}", file=sys.stderr)
        return [item for items in found.values() for item in items]
    if args.kubeconfig or args.context:
        raise UsageError("-f reads files; --kubeconfig and --context read a cluster: pick one")
    docs: list[object] = []
    for path in paths:
        docs += (
            loading.read_stream(sys.stdin, "-") if path == "-" else loading.read_documents([path])
        )
    return docs


def _answer(args: argparse.Namespace) -> tuple[str, int]:
    from firewall_operator import cluster, explain, questions
    from firewall_operator.planner import Planner

    try:
        port, protocol = cli.port_and_protocol(args.port, args.protocol)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if args.matrix and (args.source or args.destination):
        raise UsageError("--matrix takes no --from/--to")
    if not args.matrix:
        for flag, value in (("--from", args.source), ("--to", args.destination)):
            if not value:
                raise UsageError(f"{flag} ENDPOINT is required (or use --matrix)")
    snapshot = cluster.Snapshot.from_documents(_documents(args))
    planner = Planner(snapshot)
    for problem in planner.problems():
        print(f"podwall explain: {problem}", file=sys.stderr)
    if args.matrix:
        families = questions.matrix_families(snapshot, args.family)
        found = questions.matrices(planner, families, port=port, protocol=protocol)
        if args.output == "json":
            out: Any = found[0] if len(found) == 1 else found
            return json.dumps(out, indent=2) + "\n", ALLOWED
        return explain.matrices_text(found), ALLOWED
    source, notes = questions.endpoint(args.source, snapshot, "--from")
    destination, more = questions.endpoint(args.destination, snapshot, "--to")
    answer = questions.ask(
        planner,
        source,
        destination,
        port=port,
        protocol=protocol,
        family=args.family,
        notes=notes + more,
    )
    status = ALLOWED if answer.allowed else DENIED
    if args.output == "json":
        return json.dumps(explain.answer_json(answer), indent=2) + "\n", status
    return explain.answer_text(answer), status


def run(args: argparse.Namespace) -> int:
    from firewall_operator.errors import OperatorError

    try:
        text, status = _answer(args)
    except (UsageError, OperatorError) as exc:
        print(f"podwall explain: {exc}", file=sys.stderr)
        return USAGE
    sys.stdout.write(text)
    return status
