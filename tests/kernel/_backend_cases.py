"""Shared data and in-namespace helpers for the backend kernel tests.

``sample_chains`` covers every rule feature the model has (addresses,
interfaces, protocol, matches with negated and multi-word options, goto,
target options); ``in_ns`` runs one backend operation in a forked child inside
a namespace and returns its result or a picklable ``Failure``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from firewall_lab import netns
from firewall_plugin import backends, dataplane, model, names, render
from firewall_plugin.backends.base import KernelTable
from firewall_plugin.errors import PodwallError

BACKENDS = ("iptables-nft", "iptables-legacy", "iptc")
FAMILIES: tuple[model.Family, ...] = ("ipv4", "ipv6")
SAMPLE_SET = "PODWALL-S-SAMPLE"
INGRESS = "PODWALL-I-SAMPLE"
EGRESS = "PODWALL-E-SAMPLE"


@dataclass(frozen=True)
class Failure:
    """A PodwallError raised in the child, by class name and message."""

    kind: str
    message: str


def pod_ip(family: model.Family) -> str:
    return "fd00:10::5" if family == "ipv6" else "10.10.0.5"


def peer_net(family: model.Family) -> str:
    return "fd00:20::/64" if family == "ipv6" else "10.20.0.0/16"


def sample_chains(family: model.Family) -> list[model.Chain]:
    """A forward chain and two per-pod chains using every model feature."""
    unreachable = "icmp6-port-unreachable" if family == "ipv6" else "icmp-port-unreachable"
    tcp_8080 = model.Match("tcp", (("dport", "8080"),))
    not_dns = model.Match("udp", (("!dport", "53"),))
    not_set = model.Match("set", (("!match-set", f"{SAMPLE_SET} src"),))
    ingress = (
        *dataplane.chain_head("ingress"),
        model.Rule("RETURN", names.comment("web from peers"), source=peer_net(family),
                   protocol="tcp", matches=(tcp_8080,)),
        model.Rule("RETURN", "podwall:multi", protocol="udp",
                   matches=(model.Match("multiport", (("dports", "5353,8053"),)), not_set)),
        model.Rule("DROP", "podwall_bare", protocol="udp", matches=(not_dns,)),
        model.Rule(EGRESS, names.comment("goto"), in_interface="eth0",
                   out_interface="veth+", goto=True),
        model.Rule("REJECT", names.comment("deny"), protocol="tcp",
                   target_options=(("reject-with", "tcp-reset"),)),
        model.Rule("REJECT", names.comment("deny"), target_options=(("reject-with", unreachable),)),
    )  # fmt: skip
    egress = (
        *dataplane.chain_head("egress"),
        model.Rule("MARK", names.comment("allowed"), destination=peer_net(family),
                   target_options=(("set-xmark", "0x4000/0x4000"),)),
        model.Rule("RETURN", names.comment("marked"),
                   matches=(model.Match("mark", (("mark", "0x4000/0x4000"),)),)),
        model.Rule("RETURN", names.comment("ns/pöd-名前 " + "x" * 300)),
        model.Rule("DROP", names.comment("not established"),
                   matches=(model.Match("conntrack", (("!ctstate", "RELATED,ESTABLISHED"),)),)),
    )  # fmt: skip
    forward = (
        model.Rule("RETURN", names.comment("replies"), matches=(dataplane.ESTABLISHED,)),
        model.Rule(EGRESS, names.comment("egress x/a"), source=pod_ip(family)),
        model.Rule(INGRESS, names.comment("ingress x/a"), destination=pod_ip(family)),
    )
    return [
        model.Chain(names.FORWARD_CHAIN, forward),
        model.Chain(INGRESS, ingress),
        model.Chain(EGRESS, egress),
    ]


def expected(chains: Sequence[model.Chain], family: model.Family) -> dict[str, list[str]]:
    """What ``read().chains`` must say after ``chains`` were applied."""
    return {chain.name: [render.rule_spec(r, family) for r in chain.rules] for chain in chains}


def iptables(backend: str, family: model.Family) -> str:
    """The iptables binary that sees the tables ``backend`` writes."""
    variant = "nft" if backend == "iptables-nft" else "legacy"
    return f"{'ip6tables' if family == 'ipv6' else 'iptables'}-{variant}"


def make_sample_set(ns: str, family: model.Family) -> None:
    fam = render.ipset_family(family)
    netns.run(ns, ["ipset", "create", SAMPLE_SET, "hash:net", "family", fam])


def _op(backend: str, op: str, family: model.Family, kwargs: dict[str, Any]) -> object:
    chosen = backends.get_backend(backend)
    try:
        if op in ("read", "read_hooks"):
            return getattr(chosen, op)(family)
        getattr(chosen, op)(family, **kwargs)
        return None
    except PodwallError as exc:
        return Failure(type(exc).__name__, str(exc))


def in_ns(ns: str, backend: str, op: str, family: model.Family, **kwargs: Any) -> Any:
    """Run ``backend.<op>(family, **kwargs)`` inside ``ns``; a PodwallError
    comes back as a Failure, anything else fails the test."""
    return netns.call(ns, _op, backend, op, family, kwargs)


def read(ns: str, backend: str, family: model.Family) -> KernelTable:
    table = in_ns(ns, backend, "read", family)
    assert isinstance(table, KernelTable), table
    return table


def apply_ok(ns: str, backend: str, family: model.Family, **kwargs: Any) -> None:
    result = in_ns(ns, backend, "apply", family, **kwargs)
    assert result is None, result


def run(ns: str, argv: Sequence[str]) -> str:
    return netns.run(ns, list(argv)).stdout


def spawn_all(ns: str, work: Callable[[int], object], count: int) -> list[object]:
    """Run ``work(i)`` for i in range(count) in parallel children in ``ns``,
    released together by a barrier; return their results in order."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(count)
    queue = ctx.Queue()

    def child(index: int) -> None:
        try:
            netns.enter(ns)
            barrier.wait(timeout=60)
            queue.put((index, work(index)))
        except BaseException as exc:
            queue.put((index, f"{type(exc).__name__}: {exc}"))

    procs = [ctx.Process(target=child, args=(i,)) for i in range(count)]
    for proc in procs:
        proc.start()
    results: dict[int, object] = {}
    try:
        for _ in range(count):
            index, value = queue.get(timeout=120)
            results[index] = value
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return [results[i] for i in range(count)]


def foreign_forward_writer() -> None:
    """Append a FORWARD rule through libiptc the way other tools do: autocommit
    and no xtables lock (run in a separate process, inside the namespace)."""
    code = (
        "import iptc\n"
        "table = iptc.Table(iptc.Table.FILTER)\n"
        "rule = iptc.Rule()\n"
        "rule.create_match('comment').comment = 'foreign'\n"
        "rule.create_target('ACCEPT')\n"
        "iptc.Chain(table, 'FORWARD').append_rule(rule)\n"
    )
    import sys

    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
