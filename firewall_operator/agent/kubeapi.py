"""A small Kubernetes REST client (aiohttp) with the credentials kopf uses.

``KubeApi(info)`` takes the ``kopf.ConnectionInfo`` the agent's login handler
returns, so the agent's own requests (re-lists for the sweep, status patches,
NodeFirewall writes) use exactly kopf's credentials.  ``request`` returns the
decoded JSON or raises ``KubeApiError`` with the HTTP status; ``list_pages``
yields LIST pages (``limit``/``continue``) with the list's resourceVersion.
It knows nothing about podwall objects.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import kopf

from firewall_operator.agent.errors import KubeApiError

Json = dict[str, Any]
USER_AGENT = f"podwall-agent kopf/{getattr(kopf, '__version__', '1')}"
TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)


def _data(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """TLS settings of ``info`` (False: plain HTTP or verification off)."""
    if not info.server.startswith("https"):
        return False
    context = ssl.create_default_context(
        cafile=os.fsdecode(info.ca_path) if info.ca_path else None,
        cadata=_data(info.ca_data).decode() if info.ca_data else None,
    )
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = info.certificate_path, info.private_key_path
    with tempfile.TemporaryDirectory() as folder:
        if info.certificate_data:
            cert = os.path.join(folder, "cert.pem")
            with open(cert, "wb") as handle:
                handle.write(_data(info.certificate_data))
        if info.private_key_data:
            key = os.path.join(folder, "key.pem")
            with open(key, "wb") as handle:
                handle.write(_data(info.private_key_data))
        if cert:
            context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return context


class KubeApi:
    """JSON requests against one API server (see module doc)."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.info = info
        self.server = info.server.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.info.token:
            headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {self.info.token}"
        elif self.info.username:
            pair = f"{self.info.username}:{self.info.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=ssl_context(self.info), limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers(), timeout=TIMEOUT
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> Json:
        """The decoded answer of one request; raises KubeApiError (with status)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with self.session().request(
                method, self.server + path, params=params, data=data, headers=headers
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeApiError(f"{method} {path}: {exc!r}") from exc
        if status >= 400:
            raise KubeApiError(f"{method} {path}: HTTP {status}: {text[:300]}", status=status)
        try:
            answer = json.loads(text) if text else {}
        except ValueError as exc:
            raise KubeApiError(f"{method} {path}: not JSON: {text[:200]!r}") from exc
        return answer if isinstance(answer, dict) else {}

    async def list_pages(
        self, path: str, *, limit: int = 500
    ) -> AsyncIterator[tuple[list[Json], str]]:
        """Every page of a LIST: (items, the list's resourceVersion)."""
        params = {"limit": str(limit)}
        while True:
            page = await self.request("GET", path, params=params)
            meta = page.get("metadata") or {}
            yield list(page.get("items") or []), str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return
            params = {"limit": str(limit), "continue": str(token)}
