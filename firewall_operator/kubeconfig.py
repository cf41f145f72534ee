"""Credentials for the CLI from a kubeconfig, as kubectl reads them.

``connection(path, context)`` merges the files of ``path`` (or ``$KUBECONFIG``,
a ``:``-separated list, or ``~/.kube/config``; the first file to set a name
wins, as in kubectl), picks ``context`` (else ``current-context``) and returns
a ``kopf.ConnectionInfo`` for ``agent.kubeapi.KubeApi``.  Relative file paths
resolve against the folder of the kubeconfig that names them.  Users may hold
a token or token file, client certificate and key (files or data), basic
auth, or an ``exec`` credential plugin (``client.authentication.k8s.io``
ExecCredential, run once).  Without any kubeconfig, the pod's service account
is used (``in_cluster``).

kopf's own ``login_with_kubeconfig`` cannot choose a context and does not
resolve relative paths, hence this module.  Reads files and may run the exec
plugin; nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from typing import Any

import kopf
import yaml

from firewall_operator.errors import ClusterReadError

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
EXEC_TIMEOUT = 60.0
Json = dict[str, Any]


def kubeconfig_paths(path: str | None) -> list[str]:
    """The files to merge: ``path``, else ``$KUBECONFIG``, else ``~/.kube/config``."""
    raw = path or os.environ.get("KUBECONFIG", "")
    if raw:
        return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    default = os.path.expanduser("~/.kube/config")
    return [default] if os.path.exists(default) else []


def _load(paths: list[str]) -> tuple[str, dict[str, dict[str, Json]]]:
    current = ""
    merged: dict[str, dict[str, Json]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        try:
            with open(path) as handle:
                config = yaml.safe_load(handle) or {}
        except OSError as exc:
            raise ClusterReadError(f"kubeconfig {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ClusterReadError(f"kubeconfig {path}: not valid YAML") from exc
        if not isinstance(config, Mapping):
            raise ClusterReadError(f"kubeconfig {path}: not a kubeconfig")
        current = current or str(config.get("current-context") or "")
        base = os.path.dirname(os.path.abspath(path))
        for section, inner in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for item in config.get(section) or []:
                if isinstance(item, Mapping) and item.get("name") not in merged[section]:
                    value = dict(item.get(inner) or {})
                    merged[section][str(item.get("name"))] = {**value, "_base": base}
    return current, merged


def _file(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if not value:
        return None
    return str(value) if os.path.isabs(str(value)) else os.path.join(entry["_base"], str(value))


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError as exc:
        raise ClusterReadError(f"{path}: {exc.strerror}") from exc


def _exec_credential(spec: Mapping[str, Any], server: str) -> Json:
    """Run an ``exec`` credential plugin; its ExecCredential ``status``."""
    command = str(spec.get("command") or "")
    env = dict(os.environ)
    for item in spec.get("env") or []:
        env[str(item.get("name"))] = str(item.get("value"))
    api_version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1")
    request: Json = {"interactive": False}
    if spec.get("provideClusterInfo"):
        request["cluster"] = {"server": server}
    info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": request}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    try:
        done = subprocess.run(
            [command, *[str(a) for a in spec.get("args") or []]],
            env=env,
            capture_output=True,
            text=True,
            timeout=EXEC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterReadError(f"kubeconfig exec plugin {command}: {exc}") from exc
    if done.returncode != 0:
        raise ClusterReadError(
            f"kubeconfig exec plugin {command} failed: {done.stderr.strip()[-300:]}"
        )
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError) as exc:
        raise ClusterReadError(f"kubeconfig exec plugin {command}: not an ExecCredential") from exc
    return dict(status)


def _user_fields(user: Mapping[str, Any], server: str) -> Json:
    if user.get("auth-provider"):
        raise ClusterReadError(
            "kubeconfig: auth-provider users are not supported; use a token or an exec plugin"
        )
    fields: Json = {
        "token": user.get("token"),
        "username": user.get("username"),
        "password": user.get("password"),
        "certificate_path": _file(user, "client-certificate"),
        "certificate_data": user.get("client-certificate-data"),
        "private_key_path": _file(user, "client-key"),
        "private_key_data": user.get("client-key-data"),
    }
    token_file = _file(user, "tokenFile")
    if not fields["token"] and token_file:
        fields["token"] = _read(token_file)
    if user.get("exec"):
        status = _exec_credential(user["exec"], server)
        fields["token"] = status.get("token") or fields["token"]
        if status.get("clientCertificateData"):
            fields["certificate_data"] = status["clientCertificateData"].encode()
            fields["private_key_data"] = str(status.get("clientKeyData") or "").encode()
    return fields


def connection(path: str | None = None, context: str | None = None) -> kopf.ConnectionInfo:
    """Credentials from the kubeconfig (see module doc), else in-cluster."""
    paths = kubeconfig_paths(path)
    if not paths:
        if context:
            raise ClusterReadError(f"--context {context}: no kubeconfig to find it in")
        return in_cluster()
    current, merged = _load(paths)
    name = context or current
    if not name:
        raise ClusterReadError(f"kubeconfig {':'.join(paths)}: no current-context; give --context")
    ctx = merged["contexts"].get(name)
    if ctx is None:
        known = ", ".join(sorted(merged["contexts"])) or "none"
        raise ClusterReadError(f"kubeconfig: no context {name!s} (known: {known})")
    cluster = merged["clusters"].get(str(ctx.get("cluster")))
    if cluster is None or not cluster.get("server"):
        raise ClusterReadError(f"kubeconfig context {name}: no cluster with a server")
    server = str(cluster["server"])
    user = merged["users"].get(str(ctx.get("user") or ""), {})
    return kopf.ConnectionInfo(
        server=server,
        ca_path=_file(cluster, "certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        default_namespace=ctx.get("namespace"),
        **_user_fields(user, server),
    )


def in_cluster(account_dir: str = SERVICE_ACCOUNT) -> kopf.ConnectionInfo:
    """The API server as a pod reaches it (service env variables, token, CA)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token = os.path.join(account_dir, "token")
    if not host or not os.path.exists(token):
        raise ClusterReadError(
            "no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) and not in a pod"
        )
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return kopf.ConnectionInfo(
        server=server, ca_path=os.path.join(account_dir, "ca.crt"), token=_read(token)
    )
