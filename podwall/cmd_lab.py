"""``podwall lab``: a virtual multi-node cluster on this machine.

    podwall lab up     --dir DIR [--nodes N] [--cni bridge|ptp] [--ipv6]
                       [--no-upstream-policy-crds] [-f FILE]...
    podwall lab apply  --dir DIR -f FILE...
    podwall lab delete --dir DIR -f FILE...
    podwall lab probe  --dir DIR --port P[/PROTO] [--family F] [-o json|table] [--compare]
    podwall lab status --dir DIR [-o json|table]
    podwall lab logs   --dir DIR [--node N] [--follow]
    podwall lab down   --dir DIR
    podwall lab demo

Flags, output and exit codes only; the work is in ``firewall_lab.lab``.
Exit status: 0 done, 1 the lab failed (message on stderr), 2 bad arguments;
``probe --compare`` exits 1 when the kernel disagrees with explain.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _files(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        nargs="+",
        required=required,
        default=[],
        metavar="FILE",
        help="YAML/JSON files or folders (Namespace, Pod, Node, NetworkPolicy, FirewallRule, "
        "ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)",
    )


def _dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, help="the lab's folder (state, kubeconfig, logs)")


def configure(parser: argparse.ArgumentParser) -> None:
    from podwall import cli

    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="build a lab and start its nodes, agents and pods")
    _dir(up)
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument(
        "--cni", choices=("bridge", "ptp"), default="bridge", help="primary CNI (default bridge)"
    )
    up.add_argument("--ipv6", action="store_true", help="dual-stack pods and underlay")
    up.add_argument(
        "--agent",
        choices=("auto", "podwall", "programmer", "none", "external"),
        default="auto",
        help="node agent: podwall agent when available (auto), the lab's stand-in, none, "
        "or external (started by you, e.g. the image's containers; pods default to deny)",
    )
    up.add_argument(
        "--upstream-policy-crds",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="install SIG Network's ClusterNetworkPolicy, AdminNetworkPolicy and "
        "BaselineAdminNetworkPolicy CRDs and let the agents enforce them (default: on; "
        "they add ~20 ms to `up`)",
    )
    _files(up, required=False)
    for verb, text in (("apply", "create or replace objects"), ("delete", "delete objects")):
        sub = verbs.add_parser(verb, help=f"{text}; returns once every node programmed it")
        _dir(sub)
        _files(sub, required=True)
    probe = verbs.add_parser("probe", help="probe every ordered pod pair")
    _dir(probe)
    cli.add_port(probe, required=True, what="the port to probe")
    probe.add_argument(
        "--family", choices=("ipv4", "ipv6"), default="ipv4", help="address family (default ipv4)"
    )
    probe.add_argument(
        "-o", "--output", choices=("json", "table"), default="table", help="default table"
    )
    probe.add_argument(
        "--compare",
        action="store_true",
        help="print only where the kernel disagrees with `podwall explain --matrix`",
    )
    status = verbs.add_parser("status", help="nodes, agents, pods with node and IPs")
    _dir(status)
    status.add_argument(
        "-o", "--output", choices=("json", "table"), default="json", help="default json"
    )
    logs = verbs.add_parser(
        "logs", help="the lab's traffic log (denied connections), as JSON lines"
    )
    _dir(logs)
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--node", help="only this node's log (default: every node)")
    down = verbs.add_parser("down", help="remove everything the lab made (also after a crash)")
    _dir(down)
    demo = verbs.add_parser("demo", help="the guided demo (2 nodes, before/after policies)")
    demo.add_argument("--dir", help="keep the lab up in DIR after the demo")
    demo.add_argument(
        "--no-colour", dest="colour", action="store_false", default=None, help="plain text"
    )


def _say(text: str) -> None:
    print(f"podwall lab: {text}", file=sys.stderr, flush=True)


def _flat(groups: list[list[str]]) -> list[str]:
    return [path for group in groups for path in group]


def run(args: argparse.Namespace) -> int:
    from firewall_lab.lab.errors import LabError
    from firewall_operator.errors import OperatorError

    try:
        return _run(args)
    except (LabError, OperatorError) as exc:
        print(f"podwall lab {args.verb}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from firewall_lab.lab import ops

    verb: str = args.verb
    if verb == "up":
        if args.nodes < 1:
            print("podwall lab up: --nodes must be at least 1", file=sys.stderr)
            return 2
        ops.up(
            args.dir,
            nodes=args.nodes,
            cni=args.cni,
            ipv6=args.ipv6,
            files=_flat(args.files),
            agent=args.agent,
            say=_say,
            upstream_policy_crds=args.upstream_policy_crds,
        )
        _say(f"ready; kubectl: export KUBECONFIG={args.dir}/kubeconfig")
        return 0
    if verb == "apply":
        for obj in ops.apply(args.dir, _flat(args.files)):
            meta = obj["metadata"]
            name = "/".join(p for p in (meta.get("namespace"), meta["name"]) if p)
            print(f"{obj.get('kind', 'object').lower()}/{name} applied")
        return 0
    if verb == "delete":
        count = ops.delete(args.dir, _flat(args.files))
        print(f"{count} objects deleted")
        return 0
    if verb == "probe":
        return _probe(args)
    if verb == "status":
        from firewall_lab.lab import overview

        found = overview.status(args.dir)
        if args.output == "table":
            sys.stdout.write(overview.table(found))
        else:
            print(json.dumps(found, indent=2))
        return 0
    if verb == "logs":
        from firewall_lab.lab import trafficlogs

        for line in trafficlogs.lines(args.dir, node=args.node, follow=args.follow):
            print(line, flush=True)
        return 0
    if verb == "down":
        from firewall_lab.lab.teardown import down

        for line in down(args.dir):
            print(f"removed {line}")
        return 0
    from firewall_lab.lab.demo import run_demo

    return run_demo(keep_dir=args.dir, colour=args.colour)


def _probe(args: argparse.Namespace) -> int:
    import os

    from firewall_lab.lab import ops, probing, render
    from podwall import cli

    try:
        port, protocol = cli.port_and_protocol(args.port, args.protocol)
    except ValueError as exc:
        print(f"podwall lab probe: {exc}", file=sys.stderr)
        return 2
    recorded, client = ops.client_for(args.dir)
    layout = recorded.layout(os.path.abspath(args.dir))
    kernel: Any = probing.kernel_matrix(
        layout,
        port=port,
        protocol=protocol,  # type: ignore[arg-type]  # one of cli.PROTOCOLS
        family=args.family,
    )
    if args.compare:
        model = probing.model_matrix(client, port=port, protocol=protocol, family=args.family)
        wrong = probing.differences(kernel, model)
        for line in wrong:
            print(line)
        return 1 if wrong else 0
    if args.output == "json":
        print(json.dumps(kernel, indent=2))
    else:
        sys.stdout.write(render.matrix_table(kernel, colour=sys.stdout.isatty()))
    return 0
