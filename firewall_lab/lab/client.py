"""A small synchronous client of the lab's API server (stdlib HTTP, JSON).

Knows the kinds the lab works with (``KINDS``); ``Client`` lists, gets,
creates, replaces, patches and deletes them and maps HTTP failures to
``ApiFailure`` (with the status code).  ``url_from_kubeconfig`` reads a
kubeconfig's server.  No waiting, no lab semantics: see ``ops``.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import yaml

from firewall_lab.lab.errors import LabError

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    plural: str
    namespaced: bool

    def base(self, namespace: str = "") -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


KINDS: dict[str, Kind] = {
    "Namespace": Kind("v1", "namespaces", False),
    "Pod": Kind("v1", "pods", True),
    "Node": Kind("v1", "nodes", False),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies", True),
    "FirewallRule": Kind("podwall.io/v1alpha1", "firewallrules", False),
    "NodeFirewall": Kind("podwall.io/v1alpha1", "nodefirewalls", False),
    "ClusterNetworkPolicy": Kind(
        "policy.networking.k8s.io/v1alpha2", "clusternetworkpolicies", False
    ),
    "AdminNetworkPolicy": Kind("policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies", False),
    "BaselineAdminNetworkPolicy": Kind(
        "policy.networking.k8s.io/v1alpha1", "baselineadminnetworkpolicies", False
    ),
    "CustomResourceDefinition": Kind("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
}


#: the kinds that hold policy (the upstream ones exist only with their CRDs)
POLICY_KINDS = (
    "NetworkPolicy",
    "FirewallRule",
    "ClusterNetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
)


class ApiFailure(LabError):
    """The API server answered with an error status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def url_from_kubeconfig(path: str) -> str:
    with open(path) as handle:
        config = yaml.safe_load(handle)
    return str(config["clusters"][0]["cluster"]["server"])


def kind_of(doc: Json) -> Kind:
    kind = str(doc.get("kind") or "")
    if kind not in KINDS:
        raise LabError(f"the lab does not handle kind {kind or '(none)'!r}")
    return KINDS[kind]


class Client:
    """Verbs on the lab API at ``url``."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Json | None = None, *, content_type: str = ""
    ) -> Json:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type or "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                parsed: Json = json.loads(answer.read() or b"{}")
                return parsed
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise ApiFailure(f"{method} {path}: {exc.code} {detail}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise LabError(f"cannot reach the lab API at {self.url}: {exc}") from exc

    def list(self, kind: str, namespace: str = "") -> Json:
        """The list answer (``items`` get their ``kind``/``apiVersion`` filled in)."""
        spec = KINDS[kind]
        answer = self.request("GET", spec.base(namespace))
        for item in answer.get("items") or []:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", spec.api_version)
        return answer

    def get(self, kind: str, name: str, namespace: str = "") -> Json | None:
        try:
            return self.request("GET", f"{KINDS[kind].base(namespace)}/{name}")
        except ApiFailure as exc:
            if exc.code == 404:
                return None
            raise

    def create(self, doc: Json) -> Json:
        meta = doc.get("metadata") or {}
        return self.request("POST", kind_of(doc).base(meta.get("namespace", "")), doc)

    def replace(self, doc: Json, *, subresource: str = "") -> Json:
        meta = doc["metadata"]
        path = f"{kind_of(doc).base(meta.get('namespace', ''))}/{meta['name']}"
        return self.request("PUT", path + (f"/{subresource}" if subresource else ""), doc)

    def merge_patch(self, kind: str, name: str, patch: Json, *, subresource: str = "") -> Json:
        path = f"{KINDS[kind].base()}/{name}" + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, doc: Json) -> Json | None:
        meta = doc.get("metadata") or {}
        path = f"{kind_of(doc).base(meta.get('namespace', ''))}/{meta.get('name', '')}"
        try:
            return self.request("DELETE", path)
        except ApiFailure as exc:
            if exc.code == 404:
                return None
            raise


def items_of(client: Client, kinds: tuple[str, ...]) -> list[Json]:
    """Every object of ``kinds``; a kind the server does not serve (its CRD
    is not installed) has none."""
    found: list[Json] = []
    for kind in kinds:
        try:
            found += client.list(kind).get("items") or []
        except ApiFailure as exc:
            if exc.code != 404:
                raise
    return found
