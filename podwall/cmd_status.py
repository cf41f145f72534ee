"""``podwall status``: on how many nodes each policy is programmed, and its problems.

    podwall status [--kubeconfig F] [--context C] [-o text|json]

Reads the NodeFirewalls (what each node's agent programmed), NetworkPolicies
and FirewallRules of the cluster and prints, for every policy, on how many
nodes its current generation is programmed (``N/M``), the nodes that lack it,
and the problems the agents found.  Exit status: 0 every policy programmed
on every node without errors, 1 not (yet), 2 the cluster cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig of the cluster (default $KUBECONFIG)")
    parser.add_argument("--context", help="the kubeconfig context (default: its current one)")
    parser.add_argument(
        "-o", "--output", choices=("text", "json"), default="text", help="default text"
    )


def run(args: argparse.Namespace) -> int:
    from firewall_operator import kubeconfig, live, realization
    from firewall_operator.errors import OperatorError

    try:
        info = kubeconfig.connection(args.kubeconfig, args.context)
        found, notes = live.read(info, ("NodeFirewall", "NetworkPolicy", "FirewallRule"))
    except OperatorError as exc:
        print(f"podwall status: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"podwall status: note: {note}", file=sys.stderr)
    report = realization.summarise(
        found["NodeFirewall"], [*found["NetworkPolicy"], *found["FirewallRule"]]
    )
    if args.output == "json":
        print(json.dumps(realization.to_json(report), indent=2))
    else:
        sys.stdout.write(realization.to_text(report))
    return 0 if report.complete else 1
