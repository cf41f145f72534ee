"""A stand-in node agent for the lab, used when ``podwall agent`` is not available.

``python -m firewall_lab.lab.programmer --node N --kubeconfig F --cni-conf-dir D``
runs inside the node's namespace.  It polls the API (namespaces, pods,
network policies, firewall rules) and the node's endpoint records; when either
changed it compiles the node's desired state (``firewall_operator.compiler``)
and applies it (``firewall_operator.applier``), then reports on the node's
``NodeFirewall``: ``status.lastSync`` and ``status.observedResourceVersion``
(the smallest list resourceVersion read before the sync), the field the lab
waits on after ``apply``/``delete``.

It is not the product's agent (no kopf, no watches, no fast path): it exists
so the lab works, and is tested, on its own.  Writes nothing but the node's
podwall chains and sets and its NodeFirewall.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from firewall_lab.lab.client import POLICY_KINDS, ApiFailure, Client, url_from_kubeconfig
from firewall_lab.lab.errors import LabError

log = logging.getLogger("podwall.lab.programmer")
WATCHED = ("Namespace", "Pod", "Node", *POLICY_KINDS)


def read_cluster(client: Client) -> tuple[list[Any], int]:
    """Every watched object and the smallest list resourceVersion (kinds
    without a CRD count as empty)."""
    docs: list[Any] = []
    versions = []
    for kind in WATCHED:
        try:
            answer = client.list(kind)
        except ApiFailure as exc:
            if exc.code != 404:
                raise
            continue
        docs += answer.get("items") or []
        versions.append(int((answer.get("metadata") or {}).get("resourceVersion") or 0))
    return docs, min(versions)


def signature(docs: list[Any], records: list[Any]) -> str:
    versions = sorted(
        f"{d.get('kind')}/{d['metadata'].get('namespace', '')}/{d['metadata']['name']}"
        f"@{d['metadata'].get('resourceVersion')}"
        for d in docs
    )
    text = json.dumps([versions, [r.key + ",".join(r.ips) for r in records]])
    return hashlib.sha256(text.encode()).hexdigest()


class Programmer:
    def __init__(self, args: argparse.Namespace) -> None:
        from firewall_operator.agent import node
        from firewall_plugin import conflist

        entry = conflist.read_entry(args.cni_conf_dir) or {}
        self.node = args.node
        self.state_dir = str(entry.get("stateDir") or "/var/lib/podwall")
        run_dir = str(entry.get("runDir") or "/run/podwall")
        self.backend = node.backend_name(str(entry.get("backend") or "auto"), run_dir)
        self.client = Client(url_from_kubeconfig(args.kubeconfig))
        self.applier = node.make_applier(self.backend, run_dir=run_dir, state_dir=self.state_dir)
        self.last = ""

    def sync_once(self) -> None:
        from firewall_operator import applier, cluster, compiler
        from firewall_plugin import endpoints

        docs, observed = read_cluster(self.client)
        fingerprint = applier.endpoints_fingerprint(self.state_dir)
        records = list(endpoints.read_all(self.state_dir))
        current = signature(docs, records)
        if current == self.last:
            return
        compiled = compiler.compile_node(cluster.Snapshot.from_documents(docs), records)
        try:
            self.applier.apply(
                compiled.families, endpoints=compiled.endpoints, expect_endpoints=fingerprint
            )
        except applier.StaleEndpointsError:
            return  # a plugin ADD/DEL wrote meanwhile: read again next round
        self.last = current
        self.report(observed, endpoints=len(records), rules=compiled.rule_count)

    def report(self, observed: int, *, endpoints: int, rules: int) -> None:
        if self.client.get("NodeFirewall", self.node) is None:
            body = {
                "apiVersion": "podwall.io/v1alpha1",
                "kind": "NodeFirewall",
                "metadata": {"name": self.node},
                "spec": {"nodeName": self.node},
            }
            try:
                self.client.create(body)
            except ApiFailure as exc:
                if exc.code != 409:
                    raise
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "backend": self.backend,
            "endpoints": endpoints,
            "rules": rules,
            "lastSync": now,
            "observedResourceVersion": str(observed),
        }
        self.client.merge_patch("NodeFirewall", self.node, {"status": status}, subresource="status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firewall_lab.lab.programmer")
    parser.add_argument("--node", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--cni-conf-dir", required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    programmer = Programmer(args)
    last_error = ""
    while not stop.is_set():
        try:
            programmer.sync_once()
            last_error = ""
        except (LabError, OSError, Exception) as exc:  # keep serving; say it once
            if str(exc) != last_error:
                log.error("sync failed on %s: %s", args.node, exc)
            last_error = str(exc)
        stop.wait(args.interval)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
