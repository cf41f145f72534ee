"""The API server double driven by the official kubernetes Python client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

FIXTURES = Path(__file__).parent / "fixtures"
GROUP, VERSION, PLURAL = "test.podwall.io", "v1alpha1", "widgets"


@pytest.fixture(scope="module")
def api(apiserver: Any) -> Iterator[client.ApiClient]:
    with config.new_client_from_config(config_file=apiserver.kubeconfig) as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace({"metadata": {"name": "app"}})
        crd = yaml.safe_load((FIXTURES / "widgets-crd.yaml").read_text())
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)
        yield api_client


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }


def status_of(call: Any) -> tuple[int, str, dict[str, Any]]:
    with pytest.raises(ApiException) as caught:
        call()
    body = json.loads(caught.value.body)
    assert body["kind"] == "Status"
    return caught.value.status, body["reason"], body.get("details", {})


def test_list_paging(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for n in range(5):
        core.create_namespaced_pod("app", pod(f"page-{n}", batch="paging"))
    names, token = [], None
    while True:
        page = core.list_namespaced_pod(
            "app", label_selector="batch=paging", limit=2, _continue=token
        )
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"page-{n}" for n in range(5)]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=sel-a", ["sel-a"]),
        ("spec.nodeName=node-1", ["sel-a"]),
        ("spec.nodeName!=node-1", ["sel-b"]),
        ("status.phase=Pending", ["sel-a", "sel-b"]),
    ],
    ids=["name", "node", "not-node", "phase"],
)
def test_field_selectors(api: client.ApiClient, selector: str, expected: list[str]) -> None:
    core = client.CoreV1Api(api)
    for name, node in (("sel-a", "node-1"), ("sel-b", "node-2")):
        body = pod(name, batch="fields")
        body["spec"]["nodeName"] = node
        try:
            core.create_namespaced_pod("app", body)
        except ApiException as exc:
            assert exc.status == 409
    listed = core.list_pod_for_all_namespaces(
        label_selector="batch=fields", field_selector=selector
    )
    assert [p.metadata.name for p in listed.items] == expected


def test_errors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("app", pod("err"))
    assert status_of(lambda: core.create_namespaced_pod("app", pod("err")))[:2] == (
        409,
        "AlreadyExists",
    )
    assert status_of(lambda: core.read_namespaced_pod("nope", "app"))[:2] == (404, "NotFound")
    assert status_of(lambda: core.create_namespaced_pod("ghost", pod("x")))[:2] == (404, "NotFound")
    stale = core.read_namespaced_pod("err", "app")
    core.patch_namespaced_pod("err", "app", {"metadata": {"labels": {"a": "1"}}})
    assert status_of(lambda: core.replace_namespaced_pod("err", "app", stale))[:2] == (
        409,
        "Conflict",
    )
    test_op = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
    ]
    assert status_of(lambda: core.patch_namespaced_pod("err", "app", test_op))[:2] == (
        422,
        "Invalid",
    )


def test_patch_types(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = pod("patchy", a="1")
    body["spec"]["containers"].append({"name": "d", "image": "x"})
    core.create_namespaced_pod("app", body)
    current = core.read_namespaced_pod("patchy", "app")
    json_patch = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": current.metadata.resource_version,
        },
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
    ]
    core.patch_namespaced_pod("patchy", "app", json_patch)
    smp = {"spec": {"containers": [{"name": "d", "image": "y"}]}}
    core.patch_namespaced_pod(
        "patchy", "app", smp, _content_type="application/strategic-merge-patch+json"
    )
    core.patch_namespaced_pod(
        "patchy",
        "app",
        {"metadata": {"labels": {"a": None}}},
        _content_type="application/merge-patch+json",
    )
    got = core.read_namespaced_pod("patchy", "app")
    assert got.metadata.labels == {"b": "2"}
    assert [(c.name, c.image) for c in got.spec.containers] == [("c", "busybox"), ("d", "y")]


def test_finalizers_hold_deletion(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = pod("held")
    body["metadata"]["finalizers"] = ["podwall.io/test"]
    core.create_namespaced_pod("app", body)
    core.delete_namespaced_pod("held", "app")
    held = core.read_namespaced_pod("held", "app")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_pod("held", "app", {"metadata": {"finalizers": None}})
    assert status_of(lambda: core.read_namespaced_pod("held", "app"))[0] == 404


def test_watch_resource_version_and_bookmarks(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    start = core.list_namespaced_pod("app").metadata.resource_version
    core.create_namespaced_pod("app", pod("watched", w="1"))
    core.patch_namespaced_pod("watched", "app", {"metadata": {"labels": {"w": "2"}}})
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod,
        "app",
        resource_version=start,
        label_selector="w=1",
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        if event["type"] == "BOOKMARK":  # the client hands bookmarks over as dicts
            seen.append(("BOOKMARK", event["object"]["metadata"]["resourceVersion"]))
            stream.stop()
        else:
            seen.append((event["type"], event["object"].metadata.name))
    assert seen[:2] == [("ADDED", "watched"), ("DELETED", "watched")]  # left the selector
    assert seen[-1][0] == "BOOKMARK"


def test_watch_expired(apiserver: Any, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    old = core.list_namespaced_pod("app").metadata.resource_version
    core.create_namespaced_pod("app", pod("after-compaction"))
    apiserver.server.call(apiserver.server.store.compact)
    response = core.list_namespaced_pod(
        "app", watch=True, resource_version=old, timeout_seconds=2, _preload_content=False
    )
    first = json.loads(response.readline())
    assert first["type"] == "ERROR"
    assert (first["object"]["code"], first["object"]["reason"]) == (410, "Expired")


def test_crd_validation_defaults_and_status(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": "cw"},
        "spec": {"tier": "Baseline", "unknown": 1},
        "status": {"ignored": True},
    }
    made = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert made["spec"] == {
        "tier": "Baseline",
        "priority": 500,
        "minPort": 1,
        "maxPort": 65535,
    }  # defaulted and pruned
    assert "status" not in made
    code, reason, details = status_of(
        lambda: custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            {
                **body,
                "metadata": {"name": "bad"},
                "spec": {"priority": -1, "minPort": 9, "maxPort": 1},
            },
        )
    )
    assert (code, reason) == (422, "Invalid")
    fields = sorted(c["field"] for c in details["causes"])
    assert fields == ["spec", "spec.priority", "spec.tier"]
    status = {"status": {"conditions": [{"type": "Valid", "status": "True"}]}}
    custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, "cw", status)
    after = custom.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, "cw", {"status": None, "spec": {"priority": 3}}
    )
    assert after["status"]["conditions"][0]["status"] == "True"  # main resource keeps status
    assert after["metadata"]["generation"] == 2
    custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, "cw", {"status": {}})
    assert (
        custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "cw")["metadata"]["generation"]
        == 2
    )  # status writes do not bump generation
