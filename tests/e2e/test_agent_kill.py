"""kill -9 of the agent at random points of a 1,000-policy apply converges.

Every backend: three pods, 1,000 NetworkPolicies (``agent_kills``).  A clean
run gives the reference kernel state (and the length of its first sync);
then the kernel is wiped back to nothing, the agent is killed -9 at
seeded random moments of its first sync, twice in a row, and started once
more: its state must equal the clean one (every chain with the same rules,
every set with the same members), with no orphan chain or set and no
duplicate rule.  ``bench/bench_agent_kill.py`` does many more kills and
reports the convergence times.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import agent_kills
from tests.e2e.agent_env import AgentNode, Kube, wait_until
from tests.e2e.conftest import ApiServerHandle
from tests.kernel import faults

KILLS = 2


@pytest.fixture(scope="module")
def kube(apiserver: ApiServerHandle) -> Kube:
    made = Kube(apiserver.url)
    agent_kills.thousand_policies(made)
    return made


@pytest.fixture(params=faults.BACKENDS)
def node(kube: Kube, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[AgentNode]:
    made = AgentNode(kube, tmp_path, backend=request.param).start()
    try:
        yield made
    finally:
        made.stop()


def test_killed_agent_converges_without_duplicates_or_orphans(node: AgentNode) -> None:
    backend = node.backend
    for namespace in agent_kills.NAMESPACES:
        node.add_pod(namespace, f"pod-{namespace}")
    seconds = agent_kills.clean_run(node)
    clean = faults.canonical(node.netns, backend)
    assert sum(key.count("PODWALL") for key in clean) > 600, "the apply is not big"
    assert faults.orphans(node.netns, backend) == []

    faults.wipe_netfilter(node.netns)
    rng = random.Random(f"kill-{backend}")
    delays = [agent_kills.kill_during_apply(node, rng, seconds * 1.2) for _ in range(KILLS)]
    converged = agent_kills.converge(node)
    print(f"\n{backend}: first sync {seconds:.2f}s; killed after {delays}; converged in "
          f"{converged:.2f}s")  # fmt: skip
    try:
        wait_until(lambda: faults.canonical(node.netns, backend) == clean, what="the clean state")
    except AssertionError:
        assert differences(faults.canonical(node.netns, backend), clean) == []
    assert faults.orphans(node.netns, backend) == []


def differences(found: dict[str, list[str]], clean: dict[str, list[str]]) -> list[str]:
    """What differs from the clean state, one line per chain or set."""
    return [
        f"{key}: {'extra' if key not in clean else 'missing' if key not in found else 'differs'}"
        for key in sorted(set(found) | set(clean))
        if found.get(key) != clean.get(key)
    ]
