"""The reconcile loop's timing (Coalescer) and the status helpers, pure."""

from __future__ import annotations

from typing import Any

import pytest

from firewall_operator import fwrule
from firewall_operator.agent import status
from firewall_operator.agent.cache import rule_meta
from firewall_operator.agent.reconcile import Coalescer


def test_first_sync_is_full_and_immediate() -> None:
    c = Coalescer(debounce=0.1, resync=60, now=100.0)
    assert c.wait(100.0) == 0
    assert c.take(100.0) is True
    assert c.wait(100.0) == pytest.approx(60)


def test_burst_collapses_into_one_sync_after_debounce() -> None:
    c = Coalescer(debounce=0.1, resync=60, now=0.0)
    c.take(0.0)
    for moment in (10.0, 10.02, 10.05, 10.09):
        c.mark(moment)
    assert c.wait(10.05) == pytest.approx(0.05)
    assert c.wait(10.1) == 0
    assert c.take(10.1) is False
    assert c.wait(10.1) == pytest.approx(49.9)


def test_urgent_mark_syncs_now() -> None:
    c = Coalescer(debounce=0.5, resync=60, now=0.0)
    c.take(0.0)
    c.mark(5.0)
    c.mark(5.1, urgent=True)
    assert c.wait(5.1) == 0


def test_failure_retries_with_a_full_sync() -> None:
    c = Coalescer(debounce=0.1, resync=60, now=0.0)
    c.take(0.0)
    c.failed(1.0, 2.0)
    assert c.wait(1.0) == pytest.approx(2.0)
    assert c.take(3.0) is True  # after a failure the kernel is read back


def test_periodic_resync() -> None:
    c = Coalescer(debounce=0.1, resync=30, now=0.0)
    c.take(0.0)
    assert c.wait(29.0) == pytest.approx(1.0)
    assert c.take(30.0) is True


def rule_doc(
    *, gen: int, networks: list[str], valid: tuple[str, ...] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metadata": {"name": "r", "uid": "u", "generation": gen, "resourceVersion": "7"},
        "spec": {
            "tier": "Admin",
            "priority": 1,
            "subject": {"namespaces": {}},
            "ingress": [{"name": "n", "action": "Deny", "from": [{"networks": networks}]}],
        },
    }
    if valid:
        doc["status"] = {
            "conditions": [
                {
                    "type": "Valid",
                    "status": valid[0],
                    "reason": valid[1],
                    "message": valid[2],
                    "observedGeneration": gen,
                    "lastTransitionTime": "2020-01-01T00:00:00Z",
                }
            ]
        }
    return doc


STATUS_CASES = [
    ("valid-unwritten", rule_doc(gen=1, networks=["10.0.0.0/8"]), "True"),
    ("invalid-unwritten", rule_doc(gen=2, networks=["1:2:3/64"]), "False"),
    (
        "already-written",
        rule_doc(gen=3, networks=["10.0.0.0/8"], valid=("True", "Valid", "accepted by podwall")),
        None,
    ),
    (
        "stale-generation",
        {
            **rule_doc(gen=4, networks=["10.0.0.0/8"]),
            "status": {
                "conditions": [
                    {
                        "type": "Valid",
                        "status": "True",
                        "reason": "Valid",
                        "message": "accepted by podwall",
                        "observedGeneration": 3,
                    }
                ]
            },
        },
        "True",
    ),
]


@pytest.mark.parametrize(
    ("doc", "expected"), [c[1:] for c in STATUS_CASES], ids=[c[0] for c in STATUS_CASES]
)
def test_desired_rule_status(doc: dict[str, Any], expected: str | None) -> None:
    found = status.desired_rule_status(
        fwrule.parse(doc), rule_meta(doc), now="2030-01-01T00:00:00Z"
    )
    if expected is None:
        assert found is None
        return
    assert found is not None
    cond = found["conditions"][0]
    assert (
        cond["status"] == expected and cond["observedGeneration"] == doc["metadata"]["generation"]
    )
    assert found["ingressRules"] == 1 and found["egressRules"] == 0


def test_jitter_spreads_nodes_deterministically() -> None:
    values = {status.jitter(f"node-{i}", "rule", 2.0) for i in range(20)}
    assert len(values) == 20 and all(0 <= v < 2.0 for v in values)
    assert status.jitter("node-1", "rule", 2.0) == status.jitter("node-1", "rule", 2.0)


class RecordingApi:
    """Stands in for KubeApi: records what the status writer posts."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert (method, path) == ("POST", "/api/v1/namespaces/default/events")
        self.posted.append(kw["body"])
        return {}


def test_node_warnings_repaired_and_unenforced() -> None:
    """A repair is posted once; an unfilterable bridge once per message, again
    after it was fixed and broke anew."""
    import asyncio

    from firewall_operator.agent.cache import ClusterCache
    from firewall_operator.agent.reconcile import SyncReport
    from firewall_operator.agent.status import StatusWriter

    api = RecordingApi()
    writer = StatusWriter(api, ClusterCache(), node="n1", backend="nftables")  # type: ignore[arg-type]
    repaired = SyncReport(sequence=1, ok=True, full=True, warnings=("x was 0: set it to 1",))
    broken = SyncReport(sequence=2, ok=False, full=True, error="off", unenforced=True)
    fine = SyncReport(sequence=3, ok=True, full=True)

    async def run() -> None:
        for report in (repaired, fine, broken, broken, fine, broken):
            writer.report(report)
            await writer.warn_node(report)

    asyncio.run(run())
    assert [(e["reason"], e["message"]) for e in api.posted] == [
        ("BridgeNetfilterRepaired", "x was 0: set it to 1"),
        ("BridgeNetfilterOff", "off"),
        ("BridgeNetfilterOff", "off"),
    ]
    assert {e["involvedObject"]["kind"] for e in api.posted} == {"NodeFirewall"}
