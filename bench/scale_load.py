"""Load and measurement for ``bench_scale``: realistic pods, churn, fan-out points.

* ``realistic_pod(n, node)``: a Deployment's pod as the API server sends it.
* ``Churn(url, pods, count)``: ``count`` pod changes as fast as the double
  takes them (4 in 6 kubelet status updates, 1 label change, 1 delete +
  re-create), each run's values new (no no-op updates).
* ``fan_out``: W simulated agents (``bench.scale_watchers``) watch a path
  while a churn runs: a ``Fanout`` point (events and bytes per agent per
  change, the serving process's CPU per change); ``line`` fits CPU per
  change = fixed + per delivered event over such points.
Benchmark support only.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.agent_load import cpu_seconds, request

ROOT = Path(__file__).resolve().parents[1]


def realistic_pod(n: int, node: str) -> dict[str, Any]:
    """A Deployment's pod as the API server sends it (~1.8 KB of JSON)."""
    name, ns, ip = (
        f"app{n % 5}-7d9c5b-{n:06d}",
        f"ns-{n // 150}",
        f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",
    )
    labels = {
        "app": f"app{n % 5}",
        "pod-template-hash": "7d9c5b",
        "team": f"t{n % 10}",
        "app.kubernetes.io/part-of": "shop",
    }
    stamp = "2026-01-01T00:00:00Z"
    field = {
        "f:metadata": {"f:labels": {"f:app": {}, "f:team": {}}},
        "f:spec": {"f:containers": {}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"00000000-0000-0000-0000-{n:012d}",
            "labels": labels,
            "creationTimestamp": stamp,
            "generateName": name[:-6],
            "annotations": {"kubectl.kubernetes.io/restartedAt": stamp},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name[:-7],
                    "uid": "rs-uid",
                    "controller": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "time": stamp,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": field,
                },
                {
                    "manager": "kubelet",
                    "operation": "Update",
                    "time": stamp,
                    "subresource": "status",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIPs": {}}},
                },
            ],
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example/shop/app:1.2.3",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "MODE", "value": "production"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "volumeMounts": [
                        {
                            "name": "kube-api-access",
                            "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io",
                        }
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "kube-api-access",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
                        ]
                    },
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "192.168.0.1",
            "startTime": stamp,
            "qosClass": "Burstable",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": stamp}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "restartCount": 0,
                    "image": "registry.example/shop/app:1.2.3",
                    "imageID": "registry.example/shop/app@sha256:" + "0" * 64,
                    "containerID": "containerd://" + "1" * 64,
                    "state": {"running": {"startedAt": stamp}},
                }
            ],
        },
    }


class Churn(threading.Thread):
    """Pod changes as fast as the double takes them, ``count`` of them: 4 in 6
    kubelet status updates, 1 label change, 1 delete + re-create."""

    def __init__(self, url: str, pods: list[dict[str, Any]], count: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pods, self.count = url, pods, count
        self.random = random.Random(3)
        self.salt = time.monotonic_ns()  # every run's values differ: no no-op updates

    def run(self) -> None:
        for step in range(self.count):
            pod = self.pods[self.random.randrange(len(self.pods))]
            meta = pod["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            if step % 6 == 5:
                request(self.url, "DELETE", path)
                fresh = {k: v for k, v in pod.items()}
                fresh["metadata"] = {k: v for k, v in meta.items() if k != "resourceVersion"}
                request(self.url, "POST", path.rsplit("/", 1)[0], fresh)
            elif step % 6 == 4:
                patch = {"metadata": {"labels": {"rollout": f"{self.salt}-{step}"}}}
                request(self.url, "PATCH", path, patch, "application/merge-patch+json")
            else:
                status = {
                    "status": {
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "lastProbeTime": f"{self.salt}-{step}",
                            }
                        ]
                    }
                }
                request(self.url, "PATCH", path + "/status", status, "application/merge-patch+json")


@dataclass
class Fanout:
    """What W watchers got per pod change, and what it cost a server."""

    watchers: int
    events: float  # per watcher per change
    bytes: float  # per delivered event
    server_cpu: float  # seconds per change


def fan_out(
    url: str, path: str, watchers: int, churn: Churn, server: int, selector: str = ""
) -> Fanout:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.scale_watchers", url, path, str(watchers), selector],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    before = cpu_seconds(server)
    churn.start()
    churn.join()
    settle(server, proc.pid)  # the last events arrive
    used = cpu_seconds(server) - before
    proc.send_signal(signal.SIGTERM)
    found = json.loads(proc.stdout.readline())
    proc.wait(10)
    events, sent = sum(found["events"]), sum(found["bytes"])
    return Fanout(
        watchers, events / watchers / churn.count, sent / max(events, 1), used / churn.count
    )


def settle(*pids: int, limit: float = 60.0) -> None:
    """Wait until these processes stop using CPU (two quiet half-seconds)."""
    deadline, quiet, last = time.monotonic() + limit, 0, -1.0
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(cpu_seconds(pid) for pid in pids)
        quiet = quiet + 1 if now - last < 0.02 else 0
        last = now


def line(points: list[Fanout]) -> tuple[float, float]:
    """Least squares: CPU per change = fixed + per_event * (watchers * events)."""
    xs = [p.watchers * p.events for p in points]
    ys = [p.server_cpu for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        sum((x - mean_x) ** 2 for x in xs), 1e-12
    )
    return max(mean_y - slope * mean_x, 0.0), max(slope, 0.0)
