"""The removal check of ``--uninstall-on-exit=if-daemonset-gone``: its pure parts.

API answers → findings → uninstall or keep (``firewall_install.removal``), the
DaemonSet's name from flag or env, and the API target from the pod's
environment or a kubeconfig (``firewall_install.apiclient``).  The HTTP side runs
against the API server double in ``tests/e2e/test_install_exit_policy.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from firewall_install import apiclient, removal
from firewall_install.errors import InstallError
from firewall_install.removal import Seen


def not_found(kind: str, name: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "status": "Failure",
        "reason": "NotFound",
        "code": 404,
        "details": {"name": name, "group": "apps", "kind": kind},
    }


META = {"name": "podwall-agent", "namespace": "podwall-system"}
DS = {"kind": "DaemonSet", "metadata": META}
DELETING = {"kind": "DaemonSet", "metadata": {**META, "deletionTimestamp": "2025-01-01T00:00:00Z"}}
FORBIDDEN = {"kind": "Status", "reason": "Forbidden", "message": "no", "code": 403}
CLASSIFY: dict[str, tuple[int, dict[str, Any] | None, Seen]] = {
    "present": (200, DS, Seen.PRESENT),
    "deletion-timestamp": (200, DELETING, Seen.DELETING),
    "not-found": (404, not_found("daemonsets", "podwall-agent"), Seen.GONE),
    "not-found-other-name": (404, not_found("daemonsets", "other"), Seen.UNKNOWN),
    "not-found-other-kind": (404, not_found("namespaces", "podwall-agent"), Seen.UNKNOWN),
    "404-no-status": (404, None, Seen.UNKNOWN),
    "unauthorized": (401, {"kind": "Status", "reason": "Unauthorized", "code": 401}, Seen.REFUSED),
    "forbidden": (403, FORBIDDEN, Seen.REFUSED),
    "server-error": (500, None, Seen.UNKNOWN),
    "too-many-requests": (429, None, Seen.UNKNOWN),
}


@pytest.mark.parametrize(("status", "body", "seen"), CLASSIFY.values(), ids=list(CLASSIFY))
def test_classify(status: int, body: dict[str, Any] | None, seen: Seen) -> None:
    answer = apiclient.Answer(status=status, body=body)
    finding = removal.classify(answer, namespace="podwall-system", name="podwall-agent")
    assert finding.seen is seen
    assert "podwall-system/podwall-agent" in finding.detail


DECIDE: dict[str, tuple[Seen, bool, bool]] = {
    "present": (Seen.PRESENT, True, False),
    "deleting": (Seen.DELETING, False, True),
    "gone": (Seen.GONE, False, True),
    "refused-after-access-worked": (Seen.REFUSED, True, True),
    "refused-from-the-start": (Seen.REFUSED, False, False),
    "unknown": (Seen.UNKNOWN, True, False),
    "unknown-never-authorised": (Seen.UNKNOWN, False, False),
}


@pytest.mark.parametrize(("seen", "before", "uninstall"), DECIDE.values(), ids=list(DECIDE))
def test_decide(seen: Seen, before: bool, uninstall: bool) -> None:
    decided, why = removal.decide(removal.Finding(seen, "it"), authorised_before=before)
    assert decided is uninstall
    assert ("uninstalling" in why) is uninstall and ("stays installed" in why) is not uninstall


@pytest.mark.parametrize(
    ("status", "metadata", "terminating"),
    [
        (200, {"name": "x", "deletionTimestamp": "2025-01-01T00:00:00Z"}, True),
        (200, {"name": "x"}, False),
        (404, {}, False),
        (403, {}, False),
    ],
    ids=["terminating", "active", "not-found", "forbidden"],
)
def test_namespace_terminating(status: int, metadata: dict[str, Any], terminating: bool) -> None:
    answer = apiclient.Answer(status=status, body={"metadata": metadata})
    assert removal.namespace_terminating(answer) is terminating


PARSE: dict[str, tuple[str | None, dict[str, str], tuple[str, str] | None]] = {
    "flag": ("ns/ds", {}, ("ns", "ds")),
    "flag-beats-env": ("ns/ds", {"POD_NAMESPACE": "a", "DAEMONSET_NAME": "b"}, ("ns", "ds")),
    "env": (None, {"POD_NAMESPACE": "a", "DAEMONSET_NAME": "b"}, ("a", "b")),
    "env-without-name": (None, {"POD_NAMESPACE": "a"}, None),
    "nothing": (None, {}, None),
    "no-slash": ("ds", {}, None),
    "two-slashes": ("a/b/c", {}, None),
    "empty-namespace": ("/ds", {}, None),
}


@pytest.mark.parametrize(("value", "env", "expected"), PARSE.values(), ids=list(PARSE))
def test_parse_daemonset(
    value: str | None, env: dict[str, str], expected: tuple[str, str] | None
) -> None:
    if expected is None:
        with pytest.raises(InstallError, match="NAMESPACE/NAME"):
            removal.parse_daemonset(value, env)
    else:
        assert removal.parse_daemonset(value, env) == expected


def service_account(folder: Path) -> str:
    folder.mkdir()
    (folder / "token").write_text("t0ken\n")
    (folder / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return str(folder)


@pytest.mark.parametrize(
    ("host", "server"),
    [("10.96.0.1", "https://10.96.0.1:443"), ("fd00::1", "https://[fd00::1]:443")],
    ids=["ipv4", "ipv6"],
)
def test_in_cluster_target(tmp_path: Path, host: str, server: str) -> None:
    account = service_account(tmp_path / "sa")
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": "443"}
    target = apiclient.in_cluster(env, account_dir=account)
    assert target.server == server
    assert target.token_file == f"{account}/token" and target.ca_file == f"{account}/ca.crt"


def test_in_cluster_needs_env_and_token(tmp_path: Path) -> None:
    with pytest.raises(apiclient.ApiConfigError, match="KUBERNETES_SERVICE_HOST"):
        apiclient.in_cluster({}, account_dir=str(tmp_path))
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(apiclient.ApiConfigError, match="token"):
        apiclient.in_cluster(env, account_dir=str(tmp_path))


def kubeconfig(user: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://api:6443", **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }


def test_kubeconfig_yaml_with_token(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    target = apiclient.from_kubeconfig(str(path))
    assert (target.server, target.token, target.ca_file) == ("http://127.0.0.1:1", "abc", "")


def test_kubeconfig_json_files_relative_to_it(tmp_path: Path) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    config = kubeconfig(
        {"tokenFile": "token", "client-certificate": "c.crt", "client-key": "/abs/c.key"},
        {"certificate-authority-data": base64.b64encode(pem.encode()).decode()},
    )
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    target = apiclient.from_kubeconfig(str(tmp_path / "kubeconfig"))
    assert target.token_file == str(tmp_path / "token")
    assert target.client_cert == str(tmp_path / "c.crt") and target.client_key == "/abs/c.key"
    assert target.ca_data == pem and not target.insecure


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (kubeconfig({"exec": {"command": "aws"}}, {}), "exec not supported"),
        (kubeconfig({"client-key-data": "eA=="}, {}), "client-key-data not supported"),
        ({**kubeconfig({}, {}), "current-context": "y"}, "no contexts entry named 'y'"),
        ({"kind": "Config"}, "incomplete kubeconfig"),
        (kubeconfig({}, {"certificate-authority-data": "not base64!"}), "not base64"),
    ],
    ids=["exec", "key-data", "no-context", "empty", "bad-ca-data"],
)
def test_kubeconfig_refusals(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    (tmp_path / "kubeconfig").write_text(json.dumps(config))
    with pytest.raises(apiclient.ApiConfigError, match=message):
        apiclient.from_kubeconfig(str(tmp_path / "kubeconfig"))


def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="cannot read kubeconfig"):
        apiclient.from_kubeconfig(str(tmp_path / "nope"))
