"""The address-group design measured on the API double (``bench_scale``).

``groups_fan_out(url, W, changes, server)``: an AddressGroup CRD; one object per
distinct peer of ``scale_model``'s cluster of W nodes, labelled with the nodes
of its span; W simulated node agents watch the groups with their node's label
selector while a controller rewrites the groups each changed pod is in.
Prints the agents told per change against what the model's spans predict.
Benchmark support only.
"""

from __future__ import annotations

from typing import Any

from bench.agent_load import request
from bench.scale_load import Churn, Fanout, fan_out
from bench.scale_model import Cluster, GroupStats, group_stats

GROUP_CRD = "addressgroups.scale.podwall.io"
GROUPS = "/apis/scale.podwall.io/v1/addressgroups"


def group_objects(cluster: Cluster) -> dict[tuple[object, ...], dict[str, Any]]:
    """One AddressGroup per distinct peer: member IPs, a label per node of its span."""
    members: dict[tuple[object, ...], list[str]] = {}
    for n, pod in enumerate(cluster.pods):
        for group in cluster.groups_of(pod):
            members.setdefault(group, []).append(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    nodes: dict[tuple[object, ...], set[int]] = {}
    for group in members:
        for pod in cluster.pods:  # small clusters only (the measured part)
            if pod.namespace >= 0 and _uses(group, pod):
                nodes.setdefault(group, set()).add(pod.node)
    found = {}
    for number, (group, ips) in enumerate(sorted(members.items(), key=str)):
        labels = {f"n.scale.podwall.io/{node}": "" for node in sorted(nodes.get(group, ()))}
        found[group] = {
            "apiVersion": "scale.podwall.io/v1",
            "kind": "AddressGroup",
            "metadata": {"name": f"g{number}", "labels": labels},
            "ips": ips,
        }
    return found


def _uses(group: tuple[object, ...], pod: Any) -> bool:
    """Does a policy of ``pod`` have ``group`` as a peer (scale_model's policies)?"""
    if group[0] == "monitoring":
        return True
    if group[0] == "local":
        return bool(pod.namespace == group[1] and pod.app == ("db" if group[2] == "api" else "api"))
    return bool(pod.app == "api" and pod.team == group[1])


def groups_fan_out(
    url: str, watchers: int, changes: int, server: int, selector: str = "n.scale.podwall.io/{i}"
) -> tuple[Fanout, GroupStats]:
    """W node agents watching their groups while a controller rewrites the groups
    of changed pods (every change here moves a pod's IP)."""
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": GROUP_CRD},
        "spec": {
            "group": "scale.podwall.io",
            "scope": "Cluster",
            "names": {
                "plural": "addressgroups",
                "singular": "addressgroup",
                "kind": "AddressGroup",
                "listKind": "AddressGroupList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    request(url, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    cluster = Cluster.generate(watchers)
    objects = group_objects(cluster)
    for obj in objects.values():
        request(url, "POST", GROUPS, obj)

    predicted: list[int] = []

    class Controller(Churn):
        def run(self) -> None:
            for step in range(self.count):
                n = self.random.randrange(len(cluster.pods))
                for group in cluster.groups_of(cluster.pods[n]):
                    predicted.append(len(objects[group]["metadata"]["labels"]))
                    obj = objects[group]
                    obj["ips"] = [*obj["ips"][1:], f"10.200.{step >> 8 & 255}.{step & 255}"]
                    current = request(url, "GET", f"{GROUPS}/{obj['metadata']['name']}")
                    obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                    request(url, "PUT", f"{GROUPS}/{obj['metadata']['name']}", obj)

    point = fan_out(url, GROUPS, watchers, Controller(url, [], changes), server, selector)
    stats = group_stats(cluster, samples=changes * 4)
    if selector.startswith("nobody"):
        return point, stats
    print(
        f"  groups at {watchers} nodes: {point.events * watchers:.2f} agents told per pod change, "
        f"the model's spans predict {sum(predicted) / changes:.2f} for these changes"
    )
    return point, stats
