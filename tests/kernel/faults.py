"""Faults a node survives, and the agent's half, for the never-wedge tests.

* ``reboot(node)``: what a reboot does to netfilter while the state folder
  survives: every nf_tables table gone (``nft flush ruleset``: podwall's
  tables and the iptables-nft ones), every legacy iptables table flushed and
  its chains deleted, every ipset destroyed, conntrack emptied.
* ``Agent``: the agent's writer of a node (``agent.node.make_applier`` for
  the node's backend) compiling Pod/Namespace/NetworkPolicy documents for the
  node's endpoint records, inside the node's namespace.
* ``pod_docs``: the Pod objects of ``cni_helpers`` pods (namespace
  ``default``, name = the pod's netns, the UID the attachment carries).
* ``pod_chains`` / ``podwall_text``: a pod's policy chains, and all of
  podwall's kernel state, as the backend's tools print them.
* ``reach``: the TCP reachability of pod pairs, both families.

Test support only: never used by the product.
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from firewall_lab import netns, probe
from firewall_operator import cluster, compiler
from firewall_operator.agent import node as agent_node
from firewall_operator.applier import ApplyStats, NodeApplier
from firewall_plugin import endpoints, names
from tests.kernel.cni_helpers import Node, Pod
from tests.kernel.inside import entered

BACKENDS = ("nftables", "iptables-nft", "iptables-legacy", "iptc")
PORT = 8080
IPTABLES = ("iptables", "ip6tables")
#: a whole filter table another tool restores: no podwall, FORWARD accepts everything
OPEN_TABLE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m comment --comment "another tool" -j ACCEPT
COMMIT
"""


def reboot(node: Node) -> None:
    """Wipe the node's netfilter as a reboot does; keep every file."""
    wipe_netfilter(node.name)


def wipe_netfilter(name: str) -> None:
    """Every nf_tables table, legacy iptables rule and chain, ipset and
    conntrack entry of netns ``name`` gone."""
    netns.run(name, ["nft", "flush", "ruleset"])
    for tool in IPTABLES:
        tables = netns.run(name, [f"{tool}-legacy-save"], check=False).stdout
        for table in (line[1:] for line in tables.splitlines() if line.startswith("*")):
            netns.run(name, [f"{tool}-legacy", "-t", table, "-F"])
            netns.run(name, [f"{tool}-legacy", "-t", table, "-X"])
    netns.run(name, ["ipset", "destroy"], check=False)
    netns.run(name, ["conntrack", "-F"], check=False)


def flush_filter(node: Node, backend: str) -> None:
    """Another tool flushes the filter table of ``backend``'s iptables variant
    (both families) and deletes its chains, as a whole-table restore without
    podwall does.  Nothing of podwall's with the nftables backend."""
    variant = "nft" if backend in ("iptables-nft", "nftables") else "legacy"
    for tool in IPTABLES:
        node.run([f"{tool}-{variant}", "-t", "filter", "-F"])
        node.run([f"{tool}-{variant}", "-t", "filter", "-X"])


def delete_nft_table(node: Node, backend: str) -> None:
    """Another tool deletes the nf_tables table podwall's rules live in:
    ``inet podwall`` (nftables; the bridge table stays), or iptables-nft's
    ``ip filter`` and ``ip6 filter``."""
    if backend == "nftables":
        node.run(["nft", "delete", "table", "inet", "podwall"])
    else:
        node.run(["nft", "delete", "table", "ip", "filter"])
        node.run(["nft", "delete", "table", "ip6", "filter"])


def delete_ingress_chain(node: Node, backend: str, pod: Pod) -> None:
    """Delete ``pod``'s ingress chains by hand, with what refers to them (its
    ingress dispatch), as an administrator cleaning up would."""
    container_id, ifname = pod.attachment.container_id, pod.attachment.ifname
    ingress = names.ingress_chain(container_id, ifname)
    if backend == "nftables":
        for suffix in ("4", "6"):
            listing = json.loads(
                node.run(["nft", "-j", "list", "map", "inet", "podwall", f"to{suffix}"])
            )
            for entry in listing["nftables"]:
                for key, verdict in entry.get("map", {}).get("elem", []):
                    if verdict.get("jump", {}).get("target") == f"{ingress}-{suffix}":
                        interface, address = key["concat"]
                        element = ["{", f'"{interface}"', ".", address, "}"]
                        node.run(["nft", "delete", "element", "inet", "podwall", f"to{suffix}",
                                  *element])  # fmt: skip
            node.run(["nft", "delete", "chain", "inet", "podwall", f"{ingress}-{suffix}"])
        return
    variant = "nft" if backend == "iptables-nft" else "legacy"
    for tool in IPTABLES:
        binary = f"{tool}-{variant}"
        rules = [line for line in node.run([binary, "-S", names.TO_CHAIN]).splitlines()
                 if line.startswith("-A ")]  # fmt: skip
        for number in reversed(range(1, len(rules) + 1)):  # by number: iptc's specs differ
            if rules[number - 1].endswith(f"-j {ingress}"):
                node.run([binary, "-D", names.TO_CHAIN, str(number)])
        node.run([binary, "-F", ingress])
        node.run([binary, "-X", ingress])


def pod_docs(pods: Mapping[str, Pod], labels: Mapping[str, Mapping[str, str]]) -> list[Any]:
    """Pod objects (and the ``default`` Namespace) for ``cni_helpers`` pods."""
    docs: list[Any] = [
        {"kind": "Namespace", "metadata": {"name": "default", "labels": {"ns": "default"}}}
    ]
    for key, pod in pods.items():
        meta = {
            "namespace": "default",
            "name": pod.netns,
            "uid": f"uid-{pod.attachment.container_id}",
            "labels": {"pod": key, **labels.get(key, {})},
        }
        docs.append(
            {
                "kind": "Pod",
                "metadata": meta,
                "spec": {"nodeName": "node-1", "containers": [{"ports": []}]},
                "status": {"phase": "Running", "podIPs": [{"ip": ip} for ip in pod.ips]},
            }
        )
    return docs


def allow_from(target: str, source: str) -> dict[str, Any]:
    """A NetworkPolicy: pods labelled ``pod=target`` accept only ``pod=source``."""
    return {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "default", "name": f"{target}-from-{source}"},
        "spec": {
            "podSelector": {"matchLabels": {"pod": target}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": source}}}]}],
        },
    }


@dataclass
class Agent:
    """The agent's writer for one node and backend (a fresh one = a restarted agent)."""

    node: Node
    backend: str
    applier: NodeApplier = field(init=False)

    def __post_init__(self) -> None:
        with entered(self.node.name):
            self.applier = agent_node.make_applier(
                self.backend, run_dir=self.node.dir("run"), state_dir=self.node.dir("state")
            )

    def sync(self, docs: Sequence[Any], *, full: bool = False) -> ApplyStats:
        """Compile ``docs`` for the node's records and apply (``full``: drift repair)."""
        records = list(endpoints.read_all(self.node.dir("state")))
        compiled = compiler.compile_node(cluster.Snapshot.from_documents(docs), records)
        with entered(self.node.name):
            return self.applier.apply(compiled.families, endpoints=compiled.endpoints, full=full)


def pod_chains(node: Node, backend: str, pod: Pod) -> list[str]:
    """The pod's policy chains (main and tier chains, both families) as the
    backend's tools print them; [] when none exists."""
    container_id, ifname = pod.attachment.container_id, pod.attachment.ifname
    key = endpoints.record_stem(container_id, ifname)
    wanted = [
        names.ingress_chain(container_id, ifname),
        names.egress_chain(container_id, ifname),
        *names.tier_chains(key),
    ]
    lines: list[str] = []
    if backend == "nftables":
        for name, suffix in itertools.product(wanted, ("4", "6")):
            done = netns.run(
                node.name, ["nft", "-s", "list", "chain", "inet", "podwall", f"{name}-{suffix}"],
                check=False,
            )  # fmt: skip
            lines += done.stdout.splitlines() if done.returncode == 0 else []
        return lines
    variant = "nft" if backend == "iptables-nft" else "legacy"
    for tool in IPTABLES:
        text = node.run([f"{tool}-{variant}-save", "-t", "filter"])
        lines += [
            f"{tool}: {line}"
            for line in text.splitlines()
            if any(line.startswith((f"-A {name} ", f":{name} ")) for name in wanted)
        ]
    return lines


def podwall_text(node: Node, backend: str) -> str:
    """All of podwall's kernel state of ``backend`` (no counters, no sets' order)."""
    if backend == "nftables":
        parts = [
            node.run(["nft", "-s", "list", "table", family, "podwall"], check=False)
            for family in ("inet", "bridge")
        ]
        return "".join(parts)
    variant = "nft" if backend == "iptables-nft" else "legacy"
    found = []
    for tool in IPTABLES:
        text = node.run([f"{tool}-{variant}-save", "-t", "filter"])
        found += [
            f"{tool}: {line}"
            for line in text.splitlines()
            if "podwall" in line.lower() and line[0] != "#"
        ]
    sets = node.run(["ipset", "save"]).splitlines()
    found += sorted(line for line in sets if "PODWALL" in line)
    return "\n".join(found)


def duplicates(text: str) -> list[str]:
    """Lines that occur more than once among the rules and set entries of
    ``podwall_text`` (chain headers and braces excluded)."""
    lines = [line.strip() for line in text.splitlines()]
    counted = collections.Counter(
        line for line in lines if " -A " in line or line.startswith("add ") or " jump " in line
    )
    return [line for line, count in counted.items() if count > 1]


def reach(
    pods: Mapping[str, Pod], pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str, str], bool]:
    """TCP reachability ``(src, dst, family) → passed`` of ``pairs`` (each
    pod must serve ``PORT``), every family both pods have."""
    items: dict[tuple[str, str, str], probe.Probe] = {}
    for src, dst in pairs:
        for family in ("ipv4", "ipv6"):
            if any((":" in ip) == (family == "ipv6") for ip in pods[dst].ips):
                target = probe.Target(pods[dst].ip(family), PORT, "TCP")
                items[(src, dst, family)] = probe.Probe(pods[src].netns, target)
    found = probe.probe_many(items.values())
    return {key: found[item] for key, item in items.items()}


# --- whole-state comparisons -----------------------------------------------------


def canonical(name: str, backend: str) -> dict[str, list[str]]:
    """podwall's kernel state of ``backend`` in netns ``name``, whatever order
    it was written in: each chain with its rules (in order), each set or map
    with its type and its members (sorted), the hook jumps."""
    if backend == "nftables":
        return _canonical_nft(name)
    variant = "nft" if backend == "iptables-nft" else "legacy"
    state: dict[str, list[str]] = {}
    for tool in IPTABLES:
        text = netns.run(name, [f"{tool}-{variant}-save", "-t", "filter"]).stdout
        for line in text.splitlines():
            if line.startswith(":PODWALL"):
                state.setdefault(f"{tool} {line[1:].split()[0]}", [])
            elif line.startswith("-A ") and "PODWALL" in line:
                _, chain, spec = line.split(" ", 2)
                state.setdefault(f"{tool} {chain}", []).append(spec)
    members: dict[str, list[str]] = {}
    for line in netns.run(name, ["ipset", "save"]).stdout.splitlines():
        verb, set_name, rest = ([*line.split(" ", 2), ""])[:3]
        if set_name.startswith("PODWALL"):
            if verb == "create":  # without the hash seed (random at every create)
                state[f"ipset {set_name}"] = [rest.split(" initval ")[0]]
            else:
                members.setdefault(set_name, []).append(rest)
    for set_name, found in members.items():
        state.setdefault(f"ipset {set_name}", [""]).extend(sorted(found))
    return state


def _nft_items(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(table family, kind, body) of every object of podwall's nft tables."""
    found = []
    for family in ("inet", "bridge"):
        done = netns.run(name, ["nft", "-j", "list", "table", family, "podwall"], check=False)
        if done.returncode == 0:
            for item in json.loads(done.stdout)["nftables"]:
                kind, body = next(iter(item.items()))
                found.append((family, kind, body))
    return found


def _canonical_nft(name: str) -> dict[str, list[str]]:
    state: dict[str, list[str]] = {}
    for family, kind, body in _nft_items(name):
        if kind == "chain":
            head = {key: body.get(key) for key in ("type", "hook", "prio", "policy")}
            state[f"{family} chain {body['name']}"] = [json.dumps(head, sort_keys=True)]
        elif kind == "rule":  # counters count traffic (a pod's ND), not state: not compared
            expressions = [
                {"counter": None} if "counter" in part else part for part in body.get("expr", [])
            ]
            rule = {"expr": expressions, "comment": body.get("comment")}
            state[f"{family} chain {body['chain']}"].append(json.dumps(rule, sort_keys=True))
        elif kind in ("set", "map"):
            head = {key: value for key, value in body.items() if key not in ("handle", "elem")}
            elements = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", []))
            state[f"{family} {kind} {body['name']}"] = [json.dumps(head, sort_keys=True), *elements]
        elif kind == "table":
            state[f"{family} table"] = [str(body.get("comment", ""))]
    return state


def _references(value: Any, found: set[str]) -> set[str]:
    """Every chain a verdict names and every ``@set`` in a JSON value."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key in ("jump", "goto") and isinstance(inner, dict):
                found.add(str(inner.get("target")))
            _references(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _references(inner, found)
    elif isinstance(value, str) and value.startswith("@"):
        found.add(value[1:])
    return found


def orphans(name: str, backend: str) -> list[str]:
    """podwall chains and sets nothing refers to (base chains aside): what a
    write that died half-way could leave behind."""
    if backend == "nftables":
        named: set[str] = set()
        used: set[str] = set()
        for family, kind, body in _nft_items(name):
            if (kind == "chain" and "hook" not in body) or kind in ("set", "map"):
                named.add(f"{family} {body['name']}")
            if kind in ("rule", "map"):
                used |= {f"{family} {ref}" for ref in _references(body, set())}
        return sorted(named - used)
    variant = "nft" if backend == "iptables-nft" else "legacy"
    chains: set[str] = set()
    targets: set[str] = set()
    sets_used: set[str] = set()
    for tool in IPTABLES:
        text = netns.run(name, [f"{tool}-{variant}-save", "-t", "filter"]).stdout
        for line in text.splitlines():
            if line.startswith(":PODWALL"):
                chains.add(f"{tool} {line[1:].split()[0]}")
            words = line.split()
            for flag, value in itertools.pairwise(words):
                if flag in ("-j", "-g"):
                    targets.add(f"{tool} {value}")
                elif flag == "--match-set":
                    sets_used.add(value)
    sets = {
        line
        for line in netns.run(name, ["ipset", "list", "-n"]).stdout.split()
        if "PODWALL" in line
    }
    return sorted((chains - targets) | {f"ipset {s}" for s in sets - sets_used})
