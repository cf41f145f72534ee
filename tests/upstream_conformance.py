"""The network-policy-api conformance tests as data (``tests/e2e/conformance/upstream``).

``load(release)`` reads ``cases-<release>.yaml`` (transcribed from
kubernetes-sigs/network-policy-api's ``conformance/tests/*.go``, see its
header) into ``Case``s: the vendored manifests a test applies (templated
with the suite's host-network ports), then its subtests (``Step``) in order,
each with mutations of the objects as they are at that point and the pokes
to check.  ``apply_mutation`` turns one mutation into the objects to write
or delete; ``Explainer`` answers pokes from ``podwall``'s semantics.  Both
the pure test (``tests/unit/test_upstream_conformance.py``: every case
through explain, no kernel) and the lab harness
(``tests/e2e/conformance/upstream_harness.py``: the kernel and explain) use
this module.

Test support only; pure except for reading the data files.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from firewall_operator import cluster, evaluate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "e2e" / "conformance" / "upstream"
CLUSTER = DATA / "cluster.yaml"
RELEASES = ("v0.2.0", "v0.1.8")
NAMESPACE_PREFIX = "network-policy-conformance-"
HOST_PORTS = tuple(range(34345, 34353))  # the suite's default HostNetworkPorts
TEMPLATE = re.compile(r"\{\{ index \.HostNetworkPorts (\d+) \}\}")
CIDR = re.compile(r"\$\{cidr:([a-z-]+/[a-z0-9-]+)\}")
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Poke:
    client: str  # namespace/pod
    server: str
    protocol: str
    port: int
    expected: bool

    def __str__(self) -> str:
        word = "allowed" if self.expected else "denied"
        return f"{self.client} -> {self.server} {self.port}/{self.protocol} {word}"


@dataclass(frozen=True, slots=True)
class Step:
    it: str
    mutate: tuple[Json, ...]
    pokes: tuple[Poke, ...]


@dataclass(frozen=True, slots=True)
class Case:
    release: str
    id: str
    source: str
    manifests: tuple[str, ...]
    steps: tuple[Step, ...]

    def documents(self) -> list[Json]:
        return [doc for name in self.manifests for doc in manifest(self.release, name)]


def pod_key(ref: str) -> str:
    """``house/pod`` → ``network-policy-conformance-house/pod``."""
    house, _, pod = ref.partition("/")
    return f"{NAMESPACE_PREFIX}{house}/{pod}"


def port_of(value: object) -> int:
    """A port number, or ``host:N`` for the suite's HostNetworkPorts[N]."""
    if isinstance(value, str) and value.startswith("host:"):
        return HOST_PORTS[int(value[5:])]
    return int(str(value))


def manifest(release: str, name: str) -> list[Json]:
    """A vendored manifest, templated with ``HOST_PORTS``."""
    text = (DATA / release / name).read_text()
    text = TEMPLATE.sub(lambda m: str(HOST_PORTS[int(m.group(1))]), text)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load(release: str) -> list[Case]:
    with (DATA / f"cases-{release}.yaml").open() as handle:
        data = yaml.safe_load(handle)
    assert data["release"] == release
    cases = []
    for test in data["tests"]:
        steps = tuple(
            Step(
                it=step["it"],
                mutate=tuple(step.get("mutate") or ()),
                pokes=tuple(
                    Poke(pod_key(c), pod_key(s), str(proto), port_of(port), bool(ok))
                    for c, s, proto, port, ok in step["pokes"]
                ),
            )
            for step in test["steps"]
        )
        cases.append(Case(release, test["id"], test["source"], tuple(test["manifests"]), steps))
    return cases


def cluster_docs() -> list[Json]:
    return [doc for doc in yaml.safe_load_all(CLUSTER.read_text()) if doc]


def _resolve(value: Any, ips: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: _resolve(item, ips) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, ips) for item in value]
    if not isinstance(value, str):
        return value

    def cidr(match: re.Match[str]) -> str:
        ip = ipaddress.ip_address(ips[pod_key(match.group(1))])
        return f"{ip}/{ip.max_prefixlen}"

    return CIDR.sub(cidr, value)


def _walk(doc: Json, path: str) -> tuple[Any, str | int]:
    """The container holding the last element of dotted ``path``, and its key."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def find(objects: Sequence[Json], name: str) -> Json:
    """The one object named ``name`` among a case's objects."""
    (found,) = [doc for doc in objects if doc["metadata"]["name"] == name]
    return found


def apply_mutation(current: Json, op: Mapping[str, Any], ips: Mapping[str, str]) -> Json:
    """``current`` (not changed) with one ``swap``/``set``/``insert`` applied."""
    doc = copy.deepcopy(current)
    if "swap" in op:
        path, first, second = op["swap"]
        items, key = _walk(doc, path)
        rules = items[key]
        rules[first], rules[second] = rules[second], rules[first]
    elif "set" in op:
        path, value = op["set"]
        node, key = _walk(doc, path)
        node[key] = _resolve(value, ips)
    elif "insert" in op:
        path, at, value = op["insert"]
        node, key = _walk(doc, path)
        node[key].insert(at, _resolve(value, ips))
    else:
        raise ValueError(f"unknown mutation {dict(op)}")
    return doc


def delete_target(op: Mapping[str, Any]) -> Json:
    """The object a ``delete`` mutation removes (kind, namespace, name)."""
    target = op["delete"]
    meta: Json = {"name": target["name"]}
    if target.get("namespace"):
        meta["namespace"] = NAMESPACE_PREFIX + target["namespace"]
    api = {"NetworkPolicy": "networking.k8s.io/v1"}.get(target["kind"], "")
    return {"apiVersion": api, "kind": target["kind"], "metadata": meta}


class Explainer:
    """Poke verdicts from ``firewall_operator.evaluate`` over API objects."""

    def __init__(self, docs: Sequence[Json]) -> None:
        self.snapshot = cluster.Snapshot.from_documents(docs)
        self.pods = {pod.key: pod for pod in self.snapshot.pods}
        self.judge = evaluate.Evaluator(self.snapshot)

    def allowed(self, poke: Poke) -> bool:
        src, dst = self.pods[poke.client], self.pods[poke.server]
        return self.judge.verdict(src, dst, poke.port, poke.protocol).allowed
