"""A small Kubernetes REST client (aiohttp) with the credentials kopf uses.

``KubeApi(info)`` takes the ``kopf.ConnectionInfo`` the agent's login handler
returns, so the agent's own requests (its lists and watches, status patches,
NodeFirewall writes) use exactly kopf's credentials.  ``request`` returns the
decoded JSON or raises ``KubeApiError`` with the HTTP status; ``list_pages``
yields LIST pages (``limit``/``continue``) with the list's resourceVersion;
``open_watch`` opens one watch response and hands its body over as chunks.

Every connection gets TCP keepalive and ``TCP_USER_TIMEOUT`` (``keepalive_socket``):
a peer that vanished (a dead node, a partition) ends the connection within
``dead_after`` seconds even when nothing is being sent.  A server that keeps
the connection open but stops answering is only noticed by the reader (see
``watching``).  It knows nothing about podwall objects.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import kopf

from firewall_operator.agent.errors import KubeApiError, WatchStalledError

Json = dict[str, Any]
AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]  # socket.getaddrinfo's tuples
USER_AGENT = f"podwall-agent kopf/{getattr(kopf, '__version__', '1')}"
TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)


def keepalive_socket(dead_after: float) -> Callable[[AddrInfo], socket.socket]:
    """A socket factory for aiohttp: TCP keepalive (probes after ``dead_after / 3``
    idle seconds, three of them ``dead_after / 6`` apart) and ``TCP_USER_TIMEOUT``,
    so the kernel ends a connection whose peer stopped acknowledging for
    ``dead_after`` seconds, from the connect on."""
    idle, interval = max(int(dead_after / 3), 1), max(int(dead_after / 6), 1)

    def make(addr_info: AddrInfo) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)
        with contextlib.suppress(OSError, AttributeError):  # not every platform has them all
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_after * 1000))
        return sock

    return make


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

    def __init__(
        self, info: kopf.ConnectionInfo, *, dead_after: float = 12.0, user_agent: str = USER_AGENT
    ) -> None:
        self.info, self.user_agent = info, user_agent
        self.server = info.server.rstrip("/")
        self.dead_after = dead_after
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.info.token:
            headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {self.info.token}"
        elif self.info.username:
            pair = f"{self.info.username}:{self.info.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=ssl_context(self.info),
                limit=0,  # no pool limit: a watch and a LIST per kind, plus status writes
                socket_factory=keepalive_socket(self.dead_after),
            )
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

    @contextlib.asynccontextmanager
    async def open_watch(
        self, path: str, params: Mapping[str, str], *, stall: float
    ) -> AsyncIterator[WatchBody]:
        """One watch request; yields its body.  Raises KubeApiError when it cannot
        be opened, WatchStalledError when no byte came for ``stall`` seconds
        (headers included).  The connection is closed on the way out."""
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=stall)
        try:
            response = await self.session().get(self.server + path, params=params, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _mapped(f"WATCH {path}", exc) from exc
        try:
            if response.status >= 400:
                text = await response.text()
                raise KubeApiError(
                    f"WATCH {path}: HTTP {response.status}: {text[:300]}", status=response.status
                )
            yield WatchBody(path, response.content)
        finally:
            response.close()


class WatchBody:
    """The body of one watch response, read as chunks of bytes (errors mapped)."""

    def __init__(self, path: str, content: aiohttp.StreamReader) -> None:
        self.path, self.content = path, content

    async def read(self) -> bytes:
        """The next bytes; b"" once the server ended the response."""
        try:
            return await self.content.readany()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _mapped(f"WATCH {self.path}", exc) from exc


def _mapped(what: str, exc: BaseException) -> KubeApiError:
    """Timeouts (silence, keepalive, TCP_USER_TIMEOUT) are stalls; the rest are errors."""
    if isinstance(exc, TimeoutError) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return WatchStalledError(f"{what}: nothing arrived in time ({exc!r})")
    return KubeApiError(f"{what}: {exc!r}")
