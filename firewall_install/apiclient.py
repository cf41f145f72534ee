"""Read one object from the Kubernetes API with the standard library only (urllib + ssl).

For the CNI installer's watcher, which decides at exit whether podwall is being
removed (it runs in the image, never on the host).
``in_cluster`` builds an ``ApiTarget`` from what Kubernetes gives every pod
(``KUBERNETES_SERVICE_HOST``/``_PORT``, the service account token and CA);
``from_kubeconfig`` from a kubeconfig's current context (server, token or
token file, CA file or data, client certificate and key files, or
``insecure-skip-tls-verify``).  ``get_json`` GETs one path.  The token file is
read at every request (the kubelet rotates it).  Proxy variables from the
environment are ignored: the API server is reached directly.

Why not a maintained client: this runs in the cni-watch container for the
pod's whole life to make one or two GETs, under a 128 MiB limit.  Measured
(2-vCPU VM, Python 3.11): the ``kubernetes`` package adds 126 MB to the image
(+35 %), 0.5-0.7 s of import and +23 MB of RSS (45 MB against 22 MB for this
module with the installer); kopf's login helpers would pull kopf in (61 MB,
~0.9 s).  What this client does not do (exec credential plugins,
auth-provider, client certificate *data*) is refused with a message; the
in-cluster path, the one the DaemonSet uses, needs none of it.

GET only: no retries, caching or watches.  A configuration that cannot work
raises ``ApiConfigError`` (an ``InstallError``); no HTTP answer at all raises
``ApiUnavailable``; an HTTP error status is an ``Answer``, not an exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from firewall_install.errors import ApiConfigError, ApiUnavailable

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
#: kubeconfig user settings this client cannot use (it only reads files and tokens)
UNSUPPORTED_USER_KEYS = frozenset(
    {"client-certificate-data", "client-key-data", "exec", "auth-provider"}
)

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str = ""
    token_file: str = ""
    ca_file: str = ""
    ca_data: str = ""
    insecure: bool = False
    client_cert: str = ""
    client_key: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP status and the JSON body, if the body was a JSON object."""

    status: int
    body: Json | None


def in_cluster(
    env: Mapping[str, str] = os.environ, *, account_dir: str = SERVICE_ACCOUNT
) -> ApiTarget:
    """The API server as a pod reaches it: service env variables, token and CA files."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ApiConfigError(
            "KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?); give --kubeconfig"
        )
    token, ca = os.path.join(account_dir, "token"), os.path.join(account_dir, "ca.crt")
    for path in (token, ca):
        if not os.path.isfile(path):
            raise ApiConfigError(f"no service account file {path} (automountServiceAccountToken?)")
    host = f"[{host}]" if ":" in host else host
    return ApiTarget(server=f"https://{host}:{port}", token_file=token, ca_file=ca)


def from_kubeconfig(path: str) -> ApiTarget:
    """The current context of the kubeconfig at ``path`` (YAML or JSON)."""
    config = _load_config(path)
    try:
        context = _named(config, "contexts", config["current-context"])["context"]
        cluster = _named(config, "clusters", context["cluster"])["cluster"]
        user = _named(config, "users", context["user"]).get("user") or {}
        server = cluster["server"]
    except (KeyError, TypeError) as exc:
        raise ApiConfigError(f"{path}: incomplete kubeconfig (no {exc})") from exc
    folder = os.path.dirname(os.path.abspath(path))
    unsupported = sorted(UNSUPPORTED_USER_KEYS.intersection(user))
    if unsupported:
        raise ApiConfigError(f"{path}: {', '.join(unsupported)} not supported here")
    return ApiTarget(
        server=str(server),
        token=str(user.get("token", "")),
        token_file=_relative(folder, user.get("tokenFile")),
        ca_file=_relative(folder, cluster.get("certificate-authority")),
        ca_data=_decoded(cluster.get("certificate-authority-data"), origin=path),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        client_cert=_relative(folder, user.get("client-certificate")),
        client_key=_relative(folder, user.get("client-key")),
    )


def get_json(target: ApiTarget, path: str, *, timeout: float) -> Answer:
    """GET ``path`` from the API server; any HTTP status is an answer."""
    headers = {"Accept": "application/json", "User-Agent": "podwall-cni-install"}
    token = _token(target)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(target.server.rstrip("/") + path, headers=headers)
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if target.server.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=_tls(target)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout) as response:
            return Answer(status=response.status, body=_json(response.read()))
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(status=exc.code, body=_json(exc.read()))
    except (OSError, ValueError) as exc:  # URLError, timeouts, TLS errors, bad URLs
        reason = getattr(exc, "reason", exc)
        raise ApiUnavailable(f"{target.server}: {reason}") from exc


# ---------------------------------------------------------------- helpers


def _load_config(path: str) -> Json:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ApiConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # only for --kubeconfig; the in-cluster path stays stdlib-only

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ApiConfigError(f"{path} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiConfigError(f"{path} does not hold a kubeconfig object")
    return data


def _named(config: Json, section: str, name: str) -> Json:
    for item in config.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    raise ApiConfigError(f"kubeconfig has no {section} entry named {name!r}")


def _relative(folder: str, value: Any) -> str:
    return os.path.join(folder, str(value)) if value else ""


def _decoded(value: Any, *, origin: str) -> str:
    if not value:
        return ""
    try:
        return base64.b64decode(str(value), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiConfigError(f"{origin}: certificate-authority-data is not base64 PEM") from exc


def _token(target: ApiTarget) -> str:
    if not target.token_file:
        return target.token
    try:
        with open(target.token_file, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as exc:
        raise ApiUnavailable(f"cannot read the token {target.token_file}: {exc}") from exc


def _tls(target: ApiTarget) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=target.ca_file or None, cadata=target.ca_data or None
        )
        if target.client_cert:
            context.load_cert_chain(target.client_cert, target.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ApiUnavailable(f"cannot load the TLS files for {target.server}: {exc}") from exc
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _json(raw: bytes) -> Json | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
