"""The agent's liveness probe, metrics endpoint and observedResourceVersion, for real.

The agent serves ``/healthz`` (kopf's liveness endpoint) and ``/metrics``
(Prometheus) on ports inside its node netns; the test asks them from inside
that netns (``ip netns exec`` + urllib), as a kubelet probe or a scraper would.
"""

from __future__ import annotations

import json
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.agent_env import AgentNode, deny_all, python, wait_until

HEALTH_PORT, METRICS_PORT = 8081, 9464
FETCH = """
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        print(answer.status); print(answer.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code); print(exc.read().decode())
"""


def fetch(node: AgentNode, port: int, path: str) -> tuple[int, str]:
    """(HTTP status, body) of a GET from inside the node netns (0: no answer)."""
    argv = ["ip", "netns", "exec", node.netns, python(), "-c", FETCH]
    done = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=30
    )
    status, _, body = done.stdout.partition("\n")
    return (int(status), body) if status.isdigit() else (0, done.stderr)


def metrics(node: AgentNode) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = fetch(node, METRICS_PORT, "/metrics")
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def held(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], what: str) -> float:
    return found[("podwall_node_objects", (("what", what),))]


def start(node: AgentNode) -> None:
    node.start_agent(
        "--health-port",
        str(HEALTH_PORT),
        "--metrics-port",
        str(METRICS_PORT),
        "--debounce-ms",
        "20",
    )


def test_healthz_answers_200_while_syncing(node: AgentNode) -> None:
    start(node)
    node.add_pod("x", "a")
    wait_until(lambda: node.node_status().get("endpoints") == 1, what="first sync")
    for n in range(6):  # every change is a sync; the probe keeps answering in between
        node.kube.apply(deny_all("x", f"p{n}"))
        status, body = fetch(node, HEALTH_PORT, "/healthz")
        assert status == 200, body
        assert json.loads(body)["sync"]["synced"] is True
    status, body = fetch(node, HEALTH_PORT, "/nothing")
    assert status == 404, "only /healthz is the probe"


def test_metrics_expose_sync_and_what_the_node_holds(node: AgentNode) -> None:
    start(node)
    a = node.add_pod("x", "a")
    node.add_pod("y", "b")
    wait_until(lambda: held(metrics(node), "endpoints") == 2, what="2 endpoints in metrics")
    before = metrics(node)
    node.kube.apply(deny_all("y"))
    wait_until(lambda: held(metrics(node), "rules") > held(before, "rules"), what="more rules")
    after = metrics(node)
    assert held(after, "chains") > held(before, "chains") > 0, "deny-all adds a tier chain"
    assert held(after, "sets") >= 0 and held(after, "set_entries") >= 0
    count = after[("podwall_sync_duration_seconds_count", (("kind", "incremental"),))]
    count += after.get(("podwall_sync_duration_seconds_count", (("kind", "full"),)), 0)
    assert count >= 2
    assert after[("podwall_sync_errors_total", ())] == 0
    assert after[("podwall_syncs_total", (("outcome", "ok"),))] == count
    assert after[("podwall_last_successful_sync_timestamp_seconds", ())] > time.time() - 60
    assert after[("podwall_cache_objects", (("kind", "pods"),))] == 2
    assert after[("podwall_agent_info", (("backend", "iptables-nft"), ("node", node.node)))] == 1
    node.delete_pod(a)
    wait_until(lambda: held(metrics(node), "endpoints") == 1, what="1 endpoint after DEL")


def test_observed_resource_version_reaches_every_write(node: AgentNode) -> None:
    start(node)
    node.add_pod("x", "a")
    for n in range(5):  # a burst: the last write must reach the NodeFirewall promptly
        made = node.kube.apply(deny_all("x", f"burst{n}"))
    target = int(made["metadata"]["resourceVersion"])
    moment = time.monotonic()

    def observed() -> bool:
        return int(node.node_status().get("observedResourceVersion") or 0) >= target

    wait_until(observed, timeout=10, what=f"observedResourceVersion >= {target}")
    assert time.monotonic() - moment < 5, "the final state of a burst is written promptly"
    assert node.node_status()["rules"] > 0
