"""What the lab CLI does: ``up``, ``apply``, ``delete``, ``status`` and the waits.

``up`` writes the state file, starts the lab process detached and waits for
it (printing progress through ``say``), then applies the given files.
``apply`` creates or replaces objects like ``kubectl apply`` of whole
objects; an existing Pod or Namespace gets exactly the given labels, in place.
``apply``/``delete`` return once the lab kubelet has run (or removed) the
pods and every node reports ``NodeFirewall.status.observedResourceVersion``
at or past the last change (an agent without that field: a ``lastSync`` after
the change).  Talks to the lab over HTTP and files; never to the kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from firewall_lab.lab import state, teardown, topology
from firewall_lab.lab.client import POLICY_KINDS, Client, items_of, kind_of
from firewall_lab.lab.errors import LabError, LabTimeout
from firewall_lab.lab.layout import Layout

Json = dict[str, Any]
Say = Callable[[str], None]
ORDER = {"Namespace": 0, "CustomResourceDefinition": 1, "Pod": 3}
IN_PLACE = ("Pod", "Namespace")
WATCHED = ("Namespace", "Pod", "Node", *POLICY_KINDS)
POLL = 0.05


def _quiet(_: str) -> None:
    return None


def client_for(directory: str) -> tuple[state.LabState, Client]:
    recorded = state.load(directory)
    if recorded.phase != "ready":
        raise LabError(f"the lab in {directory} is {recorded.phase}: {recorded.error}".rstrip(": "))
    if not teardown.ours(recorded.pids.get("lab", 0), os.path.abspath(directory)):
        raise LabError(f"the lab process of {directory} is gone; run `podwall lab down`")
    return recorded, Client(f"http://127.0.0.1:{recorded.api_port}")


# ------------------------------------------------------------------ up


def up(
    directory: str,
    *,
    nodes: int = 2,
    cni: str = "bridge",
    ipv6: bool = False,
    files: Sequence[str] = (),
    agent: str = "auto",
    timeout: float = 120.0,
    say: Say = _quiet,
    upstream_policy_crds: bool = True,
) -> state.LabState:
    directory = os.path.abspath(directory)
    preflight()
    initial = documents(files)  # unreadable files fail before anything is built
    if os.path.exists(state.state_path(directory)):
        raise LabError(f"{directory} already holds a lab; `podwall lab down --dir` it first")
    created = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    recorded = state.LabState(
        lab_id=uuid.uuid4().hex[:6],
        nodes=nodes,
        cni=cni,
        ipv6=ipv6,
        agent=agent,
        upstream_policy_crds=upstream_policy_crds,
    )
    recorded.dir_created = created
    state.save(directory, recorded)
    family = "dual-stack" if ipv6 else "IPv4"
    say(f"building {nodes} nodes ({cni} + podwall, {family}) in {directory}")
    try:
        _start_daemon(directory, timeout=timeout)
        recorded, client = client_for(directory)
        say(f"API server at {client.url}; agents: {recorded.agents or 'none'}")
        if initial:
            apply_docs(directory, initial, timeout=timeout, say=say)
        elif recorded.agents and recorded.agent != "external":
            say("waiting for every agent to sync")
            layout = recorded.layout(directory)
            wait_synced(layout, client, _current_version(client), timeout)
    except LabError as exc:
        logs = _logs_tail(directory)
        teardown.down(directory)
        raise LabError(f"{exc}\n{logs}".rstrip()) from exc
    except BaseException:
        teardown.down(directory)
        raise
    return recorded


def _logs_tail(directory: str, lines: int = 8) -> str:
    """The end of the lab's and every agent's log (they go with ``down``)."""
    found = []
    for root, _, names in os.walk(directory):
        for name in sorted(names):
            if name.endswith(".log"):
                path = os.path.join(root, name)
                with open(path, errors="replace") as handle:
                    tail = "".join(handle.readlines()[-lines:])
                found.append(f"--- {os.path.relpath(path, directory)}\n{tail}")
    return "\n".join(found)


def preflight() -> None:
    """What a lab needs from the machine, with a message saying how to get it."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, iptables): run it with sudo")
    for tool in ("ip", "iptables-nft-restore", "ipset"):
        if shutil.which(tool) is None:
            raise LabError(f"the lab needs {tool}: `make deps` installs it (Debian)")
    for plugin in ("bridge", "ptp", "host-local"):
        if not os.path.exists(os.path.join(topology.REFERENCE_DIR, plugin)):
            raise LabError(
                f"the lab needs the reference CNI plugins in {topology.REFERENCE_DIR}: "
                "`make deps` installs containernetworking-plugins"
            )


def _start_daemon(directory: str, *, timeout: float) -> None:
    log = open(os.path.join(directory, "lab.log"), "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "firewall_lab.lab.daemon", "--dir", directory],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    recorded = state.load(directory)
    recorded.pids["lab"] = process.pid
    state.save(directory, recorded)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recorded = state.load(directory)
        if recorded.phase == "ready":
            return
        if recorded.phase == "failed" or process.poll() is not None:
            raise LabError(f"the lab did not start: {recorded.error}\n{_log_tail(directory)}")
        time.sleep(POLL)
    raise LabTimeout(f"the lab did not start in {timeout:.0f}s\n{_log_tail(directory)}")


def _log_tail(directory: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(directory, "lab.log")) as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------- apply, delete


def documents(files: Iterable[str]) -> list[Json]:
    """Every object in ``files`` (lists flattened), checked to be of a lab kind."""
    from firewall_operator.errors import OperatorError
    from firewall_operator.loading import read_documents

    try:
        read = read_documents(files)
    except OperatorError as exc:
        raise LabError(str(exc)) from exc
    docs: list[Json] = []
    for doc in read:
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            docs += [item for item in doc.get("items") or [] if isinstance(item, dict)]
        elif isinstance(doc, dict):
            docs.append(doc)
    for doc in docs:
        kind_of(doc)
    return docs


def _rank(doc: Json) -> int:
    """Apply order: namespaces, CRDs, policies, pods (delete: the reverse)."""
    kind_of(doc)
    return ORDER.get(str(doc["kind"]), 2)


def put(client: Client, doc: Json) -> Json:
    """Create ``doc`` or replace the stored object (labels only for Pods and
    Namespaces: they keep their spec, and a pod its network namespace and IP)."""
    meta = doc.get("metadata") or {}
    existing = client.get(str(doc["kind"]), meta.get("name", ""), meta.get("namespace", ""))
    if existing is None:
        return client.create(doc)
    if doc["kind"] in IN_PLACE:
        body = existing
        labels = dict(meta.get("labels") or {})
        if doc["kind"] == "Namespace":
            labels["kubernetes.io/metadata.name"] = meta["name"]
        body["metadata"]["labels"] = labels
        if "annotations" in meta:
            body["metadata"]["annotations"] = meta["annotations"]
    else:
        body = json.loads(json.dumps(doc))
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        if "status" in existing:
            body["status"] = existing["status"]
    return client.replace(body)


def apply(
    directory: str, files: Sequence[str], *, timeout: float = 60.0, say: Say = _quiet
) -> list[Json]:
    """Create or replace the objects of ``files``; see ``apply_docs``."""
    return apply_docs(directory, documents(files), timeout=timeout, say=say)


def apply_docs(
    directory: str,
    docs: Sequence[Json],
    *,
    timeout: float = 60.0,
    say: Say = _quiet,
    wait: bool = True,
) -> list[Json]:
    """Create or replace ``docs`` (namespaces first, pods last); return once
    the pods run and every node has programmed the result (``wait=False``:
    once written; a later wait covers it)."""
    recorded, client = client_for(directory)
    ordered = sorted(docs, key=_rank)
    written = [put(client, doc) for doc in ordered]
    say(f"applied {len(written)} objects")
    pods = [obj for obj in written if obj.get("kind", "Pod") == "Pod" and "spec" in obj]
    versions = [_version(obj) for obj in written]
    if pods and wait:
        say(f"waiting for {len(pods)} pods to run")
        versions += wait_pods_running(client, pods, timeout)
    if recorded.agents and wait:
        say("waiting for every node to program the change")
        layout = recorded.layout(os.path.abspath(directory))
        wait_synced(layout, client, max(versions, default=0), timeout)
    return written


def delete(directory: str, files: Sequence[str], *, timeout: float = 60.0) -> int:
    """Delete the objects of ``files``; see ``delete_docs``."""
    return delete_docs(directory, documents(files), timeout=timeout)


def delete_docs(
    directory: str, docs: Sequence[Json], *, timeout: float = 60.0, wait: bool = True
) -> int:
    """Delete ``docs`` (missing ones are fine); return once their pods are
    gone and every node has programmed the result (``wait=False``: once
    deleted).  The count deleted."""
    recorded, client = client_for(directory)
    ordered = sorted(docs, key=lambda doc: -_rank(doc))
    gone = [client.delete(doc) for doc in ordered]
    layout = recorded.layout(os.path.abspath(directory))
    keys = {f"{d['metadata'].get('namespace', '')}/{d['metadata']['name']}" for d in docs}
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    if wait:
        _until(lambda: not _running_matching(layout, keys, namespaces), timeout, "pods to stop")
    if recorded.agents and wait:
        target = max((_version(obj) for obj in gone if obj), default=0)
        wait_synced(layout, client, target, timeout)
    return sum(1 for obj in gone if obj is not None)


def _running_matching(layout: Layout, keys: set[str], namespaces: set[str]) -> bool:
    return any(key in keys or key.partition("/")[0] in namespaces for key in running_pods(layout))


def running_pods(layout: Layout) -> dict[str, Json]:
    """``DIR/pods.json``: what the kubelet runs (netns, node, IPs) by ``ns/name``."""
    try:
        with open(layout.pods_file) as handle:
            pods: dict[str, Json] = json.load(handle)["pods"]
            return pods
    except FileNotFoundError:
        return {}


# --------------------------------------------------------------- waits


def _version(obj: Json | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise LabTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def wait_pods_running(client: Client, pods: Sequence[Json], timeout: float) -> list[int]:
    """Wait until every pod is Running with an IP; their resourceVersions."""
    found: dict[str, int] = {}

    def check() -> bool:
        for pod in pods:
            meta = pod["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if key in found:
                continue
            now = client.get("Pod", meta["name"], meta["namespace"]) or {}
            status = now.get("status") or {}
            if status.get("phase") == "Failed":
                raise LabError(f"pod {key} failed: {status.get('message', '')}")
            if status.get("phase") == "Running" and status.get("podIPs"):
                found[key] = _version(now)
        return len(found) == len(pods)

    _until(check, timeout, "pods to run")
    return list(found.values())


def _current_version(client: Client) -> int:
    return max((_version(item) for item in items_of(client, WATCHED)), default=0)


def wait_synced(layout: Layout, client: Client, target: int, timeout: float) -> None:
    """Every node has programmed the objects at ``target``: its NodeFirewall
    reports ``observedResourceVersion >= target``, or (agents that do not
    report it) its kernel holds what the compiler makes of the API objects."""
    from firewall_lab.lab.programmed import node_differences

    names = [node.name for node in layout.node_list()]
    last: list[str] = []

    def check() -> bool:
        items = client.list("NodeFirewall").get("items") or []
        status = {item["metadata"]["name"]: item.get("status") or {} for item in items}
        observed = [status.get(name, {}).get("observedResourceVersion") for name in names]
        if all(value is not None for value in observed):
            return all(int(str(value)) >= target for value in observed)
        if not all(status.get(name, {}).get("lastSync") for name in names):
            return False
        docs = items_of(client, WATCHED)
        last[:] = [
            f"{n.name}: {line}"
            for n in layout.node_list()
            for line in node_differences(layout, n, docs)
        ]
        return not last

    try:
        _until(check, timeout, f"every node to program resourceVersion {target}")
    except LabTimeout as exc:
        raise LabTimeout(f"{exc}; still differing: {'; '.join(last[:5])}") from exc
