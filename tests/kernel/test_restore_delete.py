"""DEL's delete path of the restore backends: rules deleted by spec, not a rewrite.

When the new rules of PODWALL-FORWARD are a subsequence of what the caller
listed (``current``), the restore deletes only the others (``-D CHAIN spec``)
instead of declaring (flushing) the chain.  The end state is what a rewrite
gives.  A ``current`` gone stale before the restore either still deletes
exactly the pod's rules (a foreign rule moved positions: it stays), or is
refused (a rule to delete is gone) and redone from a full read.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from firewall_lab import netns
from firewall_plugin import model, names, render
from firewall_plugin.backends.restore import RestoreBackend
from firewall_plugin.backends.table import KernelTable
from tests.kernel import _backend_cases as cases

RESTORE_BACKENDS = ["iptables-nft", "iptables-legacy"]
JUMP = render.hook_jump_spec("FORWARD")
PODS = ("a", "b", "c", "d", "e")
FOREIGN = "-s 10.9.9.9/32 -j RETURN"


def _ip(pod: str) -> str:
    return f"10.0.0.{PODS.index(pod) + 5}"


def _pod_chains(pod: str) -> list[str]:
    return [f"PODWALL-I-{pod.upper()}", f"PODWALL-E-{pod.upper()}"]


def _forward(pods: tuple[str, ...]) -> model.Chain:
    """PODWALL-FORWARD as the plugin builds it: egress rules, then ingress."""
    rules = [model.Rule("RETURN", "podwall: replies")]
    rules += [model.Rule(_pod_chains(p)[1], f"podwall: egress {p}", source=_ip(p)) for p in pods]
    rules += [
        model.Rule(_pod_chains(p)[0], f"podwall: ingress {p}", destination=_ip(p)) for p in pods
    ]
    return model.Chain(names.FORWARD_CHAIN, tuple(rules))


def _pod(pod: str) -> list[model.Chain]:
    return [model.Chain(name, (model.Rule("DROP", "podwall: pod"),)) for name in _pod_chains(pod)]


def _delete(backend: str, pod: str, foreign: str) -> tuple[int, KernelTable]:
    """List FORWARD and PODWALL-FORWARD, make the ``foreign`` change, then
    apply DEL of ``pod`` from the listing.  Returns (restores run, table)."""
    chosen = RestoreBackend(variant=backend.removeprefix("iptables-"))
    current = chosen.read_chains("ipv4", [names.FORWARD_CHAIN])
    for name in _pod_chains(pod):
        current.chains.setdefault(name, [])
    tool = cases.iptables(backend, "ipv4")
    if foreign == "insert-first":
        subprocess.run(
            [tool, "-w", "-I", names.FORWARD_CHAIN, "1", *shlex.split(FOREIGN)], check=True
        )
    elif foreign == "pod-rule-gone":
        spec = render.rule_spec(_forward((pod,)).rules[1])
        subprocess.run([tool, "-w", "-D", names.FORWARD_CHAIN, *shlex.split(spec)], check=True)
    restores = []
    original = chosen.restore

    def counted(family: model.Family, text: str) -> None:
        restores.append(text)
        original(family, text)

    chosen.restore = counted  # type: ignore[method-assign]  # observe, still run
    remaining = tuple(p for p in PODS if p != pod)
    chosen.apply("ipv4", replace=[_forward(remaining)], delete=_pod_chains(pod), current=current)
    if len(restores) == 1:
        assert ":PODWALL-FORWARD - [0:0]" not in restores[0].splitlines()  # not flushed
    return len(restores), chosen.read("ipv4")


# foreign change between listing and restore → restores run, FOREIGN rule kept
STALE_CASES = {
    "listing-current": ("", 1, False),
    "foreign-rule-shifts-positions": ("insert-first", 1, True),
    "pod-rule-gone-refused-then-read": ("pod-rule-gone", 2, False),
}


@pytest.mark.parametrize(("foreign", "restores", "kept"), STALE_CASES.values(), ids=STALE_CASES)
@pytest.mark.parametrize("pod", ["a", "c", "e"], ids=["first", "middle", "last"])
@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_delete_by_spec_reaches_the_rewritten_state(
    node_ns: str, backend: str, pod: str, foreign: str, restores: int, kept: bool
) -> None:
    chains = [_forward(PODS), *(chain for p in PODS for chain in _pod(p))]
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    ran, table = netns.call(node_ns, _delete, backend, pod, foreign)
    assert ran == restores
    remaining = tuple(p for p in PODS if p != pod)
    want = cases.expected([_forward(remaining), *(c for p in remaining for c in _pod(p))], "ipv4")
    if kept:
        want[names.FORWARD_CHAIN].insert(0, FOREIGN)
    assert table.chains == want
    assert table.forward == [JUMP]


@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_drift_in_the_listing_is_repaired(node_ns: str, backend: str) -> None:
    """A foreign rule listed in PODWALL-FORWARD goes too, by its spec, as a
    rewrite would remove it."""
    chains = [_forward(PODS), *(chain for p in PODS for chain in _pod(p))]
    cases.apply_ok(node_ns, backend, "ipv4", replace=chains)
    tool = cases.iptables(backend, "ipv4")
    cases.run(node_ns, [tool, "-w", "-I", names.FORWARD_CHAIN, "3", *shlex.split(FOREIGN)])
    ran, table = netns.call(node_ns, _delete, backend, "b", "")
    assert ran == 1
    remaining = tuple(p for p in PODS if p != "b")
    want = cases.expected([_forward(remaining), *(c for p in remaining for c in _pod(p))], "ipv4")
    assert table.chains == want


def _detach_among_many(backend: str, state: str, victim: int) -> tuple[KernelTable, list[str]]:
    """Inside the node: ADD of ``MANY`` pods, then DEL of the pod number
    ``victim``.  Returns the table and the expected PODWALL-FORWARD specs."""
    from bench import workload
    from firewall_plugin import config, sync, xtables

    records = workload.records(MANY)
    settings = config.parse({"cniVersion": "1.0.0", "name": "n", "type": "podwall",
                             "backend": backend, "stateDir": state,
                             "runDir": f"{state}/run"})  # fmt: skip
    chosen = sync.resolve_backend(settings, remember=False)
    for record in records:
        sync.attach(chosen, settings, record)
    gone = sorted(records, key=lambda record: record.key)[victim]
    sync.detach(chosen, settings, gone.containerID, gone.ifName)
    kept = [record.endpoint() for record in records if record is not gone]
    forward = xtables.dispatch_chains(kept, "ipv4", state_dir=state)[0]
    return chosen.read("ipv4"), [render.rule_spec(r) for r in forward.rules]


MANY = 18


@pytest.mark.parametrize("victim", [0, 9, -1], ids=["first", "middle", "last"])
@pytest.mark.parametrize("backend", RESTORE_BACKENDS)
def test_cni_del_among_many_pods(node_ns: str, tmp_path: object, backend: str, victim: int) -> None:
    table, want = netns.call(node_ns, _detach_among_many, backend, str(tmp_path), victim)
    assert table.chains[names.FORWARD_CHAIN] == want
    assert table.forward == [JUMP]
    per_pod = [name for name in table.chains if name.startswith("PODWALL-I-")]
    assert len(per_pod) == MANY - 1
