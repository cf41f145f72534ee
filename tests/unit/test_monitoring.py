"""``deploy/monitoring``: the component renders on top of ``deploy/`` with the
real ``kubectl kustomize``, its PodMonitor selects the agent pods' metrics
port, and every metric the Grafana dashboard queries is one the agent
exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from firewall_operator import logtags
from firewall_operator.agent import metrics, trafficlog

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
METRIC = re.compile(r"\b(podwall_[a-z_]+)")


def rendered(tmp_path: Path) -> dict[str, dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (the machine image ships it)")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "deploy", overlay)],
                "components": [os.path.relpath(MONITORING, overlay)],
            }
        )
    )
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_component_adds_a_podmonitor_and_the_dashboard(tmp_path: Path) -> None:
    found = rendered(tmp_path)
    monitor = found["PodMonitor/podwall-agent"]
    pods = found["DaemonSet/podwall-agent"]["spec"]["template"]
    labels = pods["metadata"]["labels"]
    assert monitor["metadata"]["namespace"] == "podwall-system"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for c in pods["spec"]["containers"] for p in c.get("ports") or []}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in ports
    config = found["ConfigMap/podwall-grafana-dashboard"]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["podwall-dashboard.json"])["uid"] == "podwall"


def exported() -> set[str]:
    """Every sample name an agent's registry can export."""
    agent = metrics.Metrics(node="n1")
    traffic = trafficlog.TrafficLog(group=1, node="n1")
    agent.watch_traffic_log(traffic)

    class Source:
        def read_counters(self) -> dict[str, tuple[int, int]]:
            return {}

    agent.watch_drops(Source(), lambda: logtags.no_tags)
    agent.sync_seconds.labels("full").observe(0.1)
    agent.syncs.labels("ok").inc()
    agent.held.labels("rules").set(1)
    agent.record_backend("nft")
    registry: CollectorRegistry = agent.registry
    names = set()
    for family in registry.collect():
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "podwall-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries.append(dashboard["templating"]["list"][1]["definition"])
    used = {name for query in queries for name in METRIC.findall(query)}
    assert used - exported() == set()
    assert {"podwall_dropped_packets_total", "podwall_dropped_bytes_total"} <= used
