"""Builders for policy-semantics tests: the basic fixture cluster plus
policies written as YAML snippets (namespace, name and kind filled in)."""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import yaml

from firewall_operator import cluster, evaluate

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"


@functools.cache
def base_documents() -> tuple[Any, ...]:
    return tuple(yaml.safe_load_all((FIXTURES / "cluster-basic.yaml").read_text()))


def netpol(namespace: str, name: str, spec: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": yaml.safe_load(spec),
    }


def fwr(name: str, spec: str) -> dict[str, Any]:
    return {
        "apiVersion": "podwall.io/v1alpha1",
        "kind": "FirewallRule",
        "metadata": {"name": name, "generation": 1},
        "spec": yaml.safe_load(spec),
    }


def snapshot(*extra: dict[str, Any]) -> cluster.Snapshot:
    return cluster.Snapshot.from_documents([*base_documents(), *extra])


def reachable(snap: cluster.Snapshot, src: str, dst: str, port: str, family: str = "ipv4") -> bool:
    number, _, protocol = port.partition("/")
    pods = {pod.key: pod for pod in snap.pods}
    evaluator = evaluate.Evaluator(snap, family=family)  # type: ignore[arg-type]
    return evaluator.verdict(pods[src], pods[dst], int(number), protocol or "TCP").allowed
