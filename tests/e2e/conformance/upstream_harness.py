"""Runs the upstream conformance tests (``tests.upstream_conformance``) in a lab.

``UpstreamLab`` brings one 2-node lab up (bridge, IPv4, the upstream CRDs,
agents with ``--upstream-policy``) with the upstream topology
(``upstream/cluster.yaml``: four houses of two pods, two host-network
centaurs), and between tests deletes every policy object.  ``run_case``
applies a test's manifests, then for each subtest writes its mutations to
the objects as the API holds them (waiting until every node programmed
them), probes all its pokes at once from the client pods' namespaces, and
compares the kernel and ``podwall explain`` (over the lab's API objects)
with upstream's expectation.  Failures name the subtest and the poke.

Test support only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from firewall_lab import probe
from firewall_lab.lab import ops, probing
from firewall_lab.lab.client import POLICY_KINDS, Client, items_of
from firewall_lab.lab.layout import Layout
from tests import upstream_conformance as uc
from tests.e2e.conformance import harness

Json = dict[str, Any]


class UpstreamLab:
    """One lab for a whole test module (see the module docstring)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.layout: Layout | None = None
        self.client: Client | None = None

    def up(self) -> UpstreamLab:
        recorded = ops.up(self.directory, files=[str(uc.CLUSTER)], upstream_policy_crds=True)
        self.layout = recorded.layout(os.path.abspath(self.directory))
        self.client = ops.client_for(self.directory)[1]
        return self

    def pods(self) -> dict[str, Json]:
        assert self.layout is not None
        return ops.running_pods(self.layout)

    def ips(self) -> dict[str, str]:
        return {key: pod["ips"][0] for key, pod in self.pods().items()}

    def reset(self) -> None:
        """No policy objects of any kind (the next apply waits for the nodes)."""
        assert self.client is not None
        stale = items_of(self.client, POLICY_KINDS)
        if stale:
            ops.delete_docs(self.directory, stale, wait=False)

    def _mutate(self, step: uc.Step, names: Mapping[str, tuple[str, str]]) -> None:
        assert self.client is not None
        ips = self.ips()
        for op in step.mutate:
            if "delete" in op:
                ops.delete_docs(self.directory, [uc.delete_target(op)])
                continue
            kind, namespace = names[op["policy"]]
            current = self.client.get(kind, op["policy"], namespace)
            assert current is not None, f"{kind} {op['policy']} is gone"
            ops.apply_docs(self.directory, [uc.apply_mutation(current, op, ips)])

    def _probe(self, pokes: tuple[uc.Poke, ...]) -> list[bool]:
        pods = self.pods()
        pairs = {
            (str(number), poke.server): probe.Probe(
                pods[poke.client]["netns"],
                probe.Target(pods[poke.server]["ips"][0], poke.port, poke.protocol),  # type: ignore[arg-type]
            )
            for number, poke in enumerate(pokes)
        }
        found = probing.probe_pairs(
            pairs, timeout=probe.DEFAULT_TIMEOUT, retries=probe.DEFAULT_RETRIES
        )
        return [found[(str(number), poke.server)] == "open" for number, poke in enumerate(pokes)]

    def run_case(self, case: uc.Case) -> list[str]:
        """Play ``case``; the pokes where the kernel or explain differ from upstream."""
        assert self.client is not None
        docs = case.documents()
        names = {
            d["metadata"]["name"]: (d["kind"], d["metadata"].get("namespace", "")) for d in docs
        }
        ops.apply_docs(self.directory, docs)
        failures = []
        for number, step in enumerate(case.steps, 1):
            self._mutate(step, names)
            kernel = self._probe(step.pokes)
            explainer = uc.Explainer(probing.lab_documents(self.client))
            for poke, probed in zip(step.pokes, kernel, strict=True):
                explained = explainer.allowed(poke)
                if (probed, explained) != (poke.expected, poke.expected):
                    failures.append(
                        f"step {number} ({step.it}): {poke}; kernel "
                        f"{'open' if probed else 'blocked'}, explain "
                        f"{'open' if explained else 'blocked'}"
                    )
        return failures


def running_lab(factory: pytest.TempPathFactory, name: str) -> Iterator[UpstreamLab]:
    """A module fixture's body: one lab up for the module, always torn down."""
    yield from harness.module_lab(name, lambda: UpstreamLab(harness.lab_directory(factory, name)))
