"""Has a node programmed the cluster's current objects?  Asked of its kernel.

``node_differences`` compiles what the node should hold (the same compiler
the agent uses, over the given API objects and the node's endpoint records)
and compares it with the podwall chains and sets its kernel holds (read
inside the node's namespace, in a forked child that inherits the imports); it returns the chains and
sets that differ, empty when the node is programmed.  The lab waits on it
after ``apply``/``delete`` when an agent does not report
``observedResourceVersion``.  Reads the kernel; never writes it.
"""

from __future__ import annotations

from typing import Any

from firewall_lab import netns
from firewall_lab.lab.layout import Layout, Node
from firewall_operator import applier, cluster, compiler, diff
from firewall_plugin import conflist, endpoints, model
from firewall_plugin.backends import get_backend


def _inside(docs: list[Any], conf_dir: str) -> list[str]:
    """Runs in the node's namespace: desired vs kernel, as readable lines."""
    entry = conflist.read_entry(conf_dir) or {}
    state_dir = str(entry.get("stateDir") or "/var/lib/podwall")
    records = list(endpoints.read_all(state_dir))
    compiled = compiler.compile_node(
        cluster.Snapshot.from_documents(docs),
        records,
        deny_action=entry.get("denyAction") or "drop",
        unknown_pod=entry.get("podDefault") or "deny",
    )
    backend = get_backend(str(entry.get("backend") or "iptables-nft"))
    wrong: list[str] = []
    for family in model.FAMILIES:
        desired = compiled.families[family]
        table = backend.read(family)
        known = {name: tuple(specs) for name, specs in table.chains.items()}
        plan = diff.plan_chains(family=family, desired=desired.chains, known=known)
        wrong += [f"{family} chain {chain.name} differs" for chain in plan.replace]
        wrong += [f"{family} chain {name} is stale" for name in plan.delete]
    sets = diff.plan_sets(
        desired=applier.desired_sets(compiled.families), known=applier.read_kernel_sets()
    )
    wrong += [f"set {ipset.name} differs" for ipset in sets.replace]
    wrong += [f"set {name} is stale" for name in sets.destroy]
    return wrong


def node_differences(layout: Layout, node: Node, docs: list[Any]) -> list[str]:
    """What the node's kernel lacks or holds in excess (empty: programmed)."""
    found: list[str] = netns.call(
        node.netns, _inside, docs, layout.node_dir(node, "net.d"), timeout=30
    )
    return found
