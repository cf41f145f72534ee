"""Foreign rewrites are repaired by the agent, in every backend (issues 10 and 14).

One node per backend (API double, CNI chain, a real ``podwall agent`` with a
600 s resync, so only its drift watch can repair in time), pods x/a and y/b,
and an Admin FirewallRule denying x -> y (its peers are a podwall set, so
flushing the set opens the pair).  Each test rewrites podwall's state the way
another tool would (``tests/e2e/rewrites.py``) while a prober connects a -> b
every 10 ms, then asserts that podwall's kernel state comes back exactly and
that a -> b is closed again (b -> a open), within a generous bound; it prints
how long the denied pair was seen open (``-s``; ``python -m
bench.bench_drift`` measures the same windows several times).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import rewrites
from tests.e2e.agent_env import Kube
from tests.e2e.conftest import ApiServerHandle
from tests.e2e.rewrites import Rig, start_rig, stop_rig

NOTICED = "kernel state changed by another process"
BOUND = 10.0  # seconds: generous (goal: 1 s nftables, 2 s iptables), well under the resync


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def rig(
    backend: str, apiserver: ApiServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    made = start_rig(Kube(apiserver.url), tmp_path_factory.mktemp(f"rewrites-{backend}"), backend)
    try:
        yield made
    finally:
        stop_rig(made)


def check_repair(rig: Rig, rewrite: rewrites.Rewrite) -> None:
    """Rewrite, then podwall's state back exactly and x -> y closed again
    (the previous test, or the rig, left the node isolated)."""
    before = rig.state()
    noticed = rig.node.agent_log().count(NOTICED)
    prober = rewrites.Prober(rig.a.netns, rig.b.ip, 80)
    try:
        start = rewrites.now()
        rewrite.do(rig.node.netns, rig.backend)
        took = rewrites.wait_for(lambda: rig.state() == before, BOUND)
        rewrites.wait_for(lambda: not rig.node.reach(rig.a, rig.b), BOUND)
    finally:
        samples = prober.stop()
    if rewrite.undo is not None:
        rewrite.undo(rig.node.netns, rig.backend)
    assert rig.isolated(), "x -> y must be denied and y -> x open after the repair"
    seen = rewrites.window(samples, start)
    assert samples and not samples[-1][1], f"the prober still connected at its end: {seen}"
    print(f"{rig.backend} {rewrite.name}: {seen}; podwall's state back after {took:.2f} s")
    assert rig.node.agent_log().count(NOTICED) > noticed, "repaired, but not by the drift watch"


@pytest.mark.parametrize("backend", ["nftables"], indirect=True)
@pytest.mark.parametrize("rewrite", rewrites.rewrites_for("nftables"), ids=lambda r: r.name)
def test_nftables_rewrite_is_repaired(rig: Rig, rewrite: rewrites.Rewrite) -> None:
    check_repair(rig, rewrite)


@pytest.mark.parametrize("backend", rewrites.IPTABLES_BACKENDS, indirect=True)
@pytest.mark.parametrize("rewrite", rewrites.rewrites_for("iptc"), ids=lambda r: r.name)
def test_iptables_rewrite_is_repaired(rig: Rig, rewrite: rewrites.Rewrite) -> None:
    check_repair(rig, rewrite)


@pytest.mark.parametrize("backend", rewrites.IPTABLES_BACKENDS, indirect=True)
def test_the_same_rewrite_right_after_a_repair_is_repaired(rig: Rig) -> None:
    """A tool that rewrites again as soon as podwall repaired (ipsets are
    polled: the second flush lands before the next poll)."""
    flush = next(rewrite for rewrite in rewrites.REWRITES if rewrite.name == "ipset-flush")
    before = rig.state()
    for _ in range(2):
        flush.do(rig.node.netns, rig.backend)
        rewrites.wait_for(lambda: rig.state() == before, BOUND)
    assert rig.isolated()
