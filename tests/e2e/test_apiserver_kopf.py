"""The API server double driven by real kopf 1.45 (``kopf run --standalone -A``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

FIXTURES = Path(__file__).parent / "fixtures"
GROUP, VERSION, PLURAL = "test.podwall.io", "v1alpha1", "widgets"


@pytest.fixture(scope="module")
def api(apiserver: Any) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=apiserver.kubeconfig) as api_client:
        crd = yaml.safe_load((FIXTURES / "widgets-crd.yaml").read_text())
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)
        yield api_client


@pytest.fixture(scope="module")
def kopf_events(
    apiserver: Any, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A running kopf operator; yields the file its handlers write events into."""
    folder = tmp_path_factory.mktemp("kopf")
    events = folder / "events.jsonl"
    events.touch()
    env = dict(os.environ, KUBECONFIG=apiserver.kubeconfig, PODWALL_TEST_EVENTS=str(events))
    log = open(folder / "kopf.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "-A",
            "--verbose",
            str(FIXTURES / "apiserver_operator.py"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            events,
            lambda e: e["kind"] == "Namespace" and e["name"] == "default",
            log=folder / "kopf.log",
        )
        yield events
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for(
    events: Path,
    check: Callable[[dict[str, Any]], bool],
    *,
    log: Path | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in events.read_text().splitlines():
            entry = json.loads(line)
            if check(entry):
                return entry
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log else ""
    raise AssertionError(f"kopf never saw the event; events: {events.read_text()}\n{tail}")


def test_kopf_sees_pods_and_updates(kopf_events: Path, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "kopf-ns"}})
    core.create_namespaced_pod(
        "kopf-ns",
        {"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    wait_for(kopf_events, lambda e: (e["kind"], e["type"], e["name"]) == ("Pod", "ADDED", "p1"))
    core.patch_namespaced_pod("p1", "kopf-ns", {"metadata": {"labels": {"x": "y"}}})
    wait_for(kopf_events, lambda e: (e["kind"], e["type"], e["name"]) == ("Pod", "MODIFIED", "p1"))


def test_kopf_create_handler_patches_status_and_posts_event(
    kopf_events: Path, api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": "kw"},
            "spec": {"tier": "Admin"},
        },
    )
    wait_for(kopf_events, lambda e: (e["kind"], e["name"]) == ("Widget", "kw"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        widget = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "kw")
        if widget.get("status", {}).get("widget_created") == {"handled": True}:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"kopf never wrote the handler result: {widget}")
    events = client.CoreV1Api(api).list_event_for_all_namespaces()
    assert any(e.reason == "Tested" and e.involved_object.name == "kw" for e in events.items)


def test_kopf_relists_after_410(apiserver: Any, kopf_events: Path, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server = apiserver.server
    assert server.call(lambda: len(server.state.streams)) >= 3  # kopf's open watches
    server.expire_watches()  # compact + ERROR 410 to every open watch
    time.sleep(0.5)
    core.create_namespace({"metadata": {"name": "after-relist"}})
    wait_for(kopf_events, lambda e: (e["kind"], e["name"]) == ("Namespace", "after-relist"))


def test_kopf_finalizer_json_patches(kopf_events: Path, api: client.ApiClient) -> None:
    """kopf adds and removes its finalizer with JSON patch + test on resourceVersion."""
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": "fin"},
            "spec": {"tier": "Admin"},
        },
    )
    deadline = time.monotonic() + 30
    while not custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "fin")["metadata"].get(
        "finalizers"
    ):
        assert time.monotonic() < deadline, "kopf never added its finalizer"
        time.sleep(0.1)
    custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "fin")
    wait_for(kopf_events, lambda e: (e["kind"], e["name"]) == ("WidgetDeleted", "fin"))
    while True:
        try:
            custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "fin")
        except client.ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() < deadline, "kopf never released its finalizer"
        time.sleep(0.1)
