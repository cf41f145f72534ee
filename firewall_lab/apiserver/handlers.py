"""The HTTP face (aiohttp): discovery, object verbs, watch streams, test hooks.

Every response is JSON; every failure is a ``kind: Status`` with the code and
reason of kube-apiserver (``errors.ApiError`` is mapped here, at the boundary).
Watch responses stream one JSON event per line.  Authentication is not
checked (any bearer token is accepted).  Object semantics live in ``objects``;
this module only parses requests and writes responses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

import yaml
from aiohttp import web

from firewall_lab.apiserver import discovery, errors, openapi, routes, selectors, tables
from firewall_lab.apiserver.objects import Api
from firewall_lab.apiserver.resources import ResourceType
from firewall_lab.apiserver.watch import WatchStream

Json = dict[str, Any]
log = logging.getLogger(__name__)
OPENAPI_V2_PB = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


@dataclasses.dataclass
class ServerState:
    api: Api
    bookmark_interval: float = 60.0
    address: str = "127.0.0.1"
    streams: set[WatchStream] = dataclasses.field(default_factory=set)
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    #: every request seen (method, path, query, user_agent), for RBAC audits
    requests: list[dict[str, str]] = dataclasses.field(default_factory=list)
    frozen: bool = False  # test hook: watches hang silently (see freeze_watches)

    def expire_watches(self) -> None:
        """Compact the history and end every open watch with 410 Expired."""
        self.api.store.compact()
        for stream in list(self.streams):
            stream.expire()

    def freeze_watches(self, frozen: bool = True) -> None:
        """Every open watch, and every one opened until ``freeze_watches(False)``,
        sends nothing and never ends (a half-open connection); other requests work."""
        self.frozen = frozen
        for stream in list(self.streams) if frozen else []:
            stream.freeze()


STATE = web.AppKey("state", ServerState)


def _json(body: Json, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _error(exc: errors.ApiError) -> web.Response:
    return _json(exc.to_status(), exc.code)


async def _body(request: web.Request) -> Any:
    if "protobuf" in request.content_type or "cbor" in request.content_type:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json, application/yaml (not {request.content_type})"
        )
    raw = await request.read()
    if not raw:
        return {}
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.BadRequest(f"the body of the request could not be decoded: {exc}") from exc


def _discovery(state: ServerState, request: web.Request) -> Json | None:
    path = request.path.rstrip("/")
    registry = state.api.registry
    if path == "/api":
        return discovery.api_versions(state.address)
    if path == "/apis":
        return discovery.api_group_list(registry)
    if path == "/version":
        return discovery.VERSION
    parts = path.split("/")[1:]
    if parts[0] == "apis" and len(parts) == 2:
        return discovery.api_group(registry, parts[1])
    target = routes.parse_path(path)
    if target is not None and not target.plural:
        return discovery.resource_list(registry, target.group, target.version)
    return None


def _resolve(state: ServerState, target: routes.Target) -> ResourceType:
    rtype = state.api.registry.lookup(target.group, target.version, target.plural)
    if rtype is None or (target.namespace is not None and not rtype.namespaced):
        raise errors.NotFound("the server could not find the requested resource")
    if rtype.namespaced and target.name and target.namespace is None:
        raise errors.NotFound("the server could not find the requested resource")
    if target.subresource and not (target.subresource == "status" and rtype.status_subresource):
        raise errors.NotFound("the server could not find the requested resource")
    return rtype


def _filter(target: routes.Target, opts: routes.ListOptions) -> selectors.Filter:
    return selectors.Filter.parse(
        namespace=target.namespace,
        label_selector=opts.label_selector,
        field_selector=opts.field_selector,
    )


def _render(rtype: ResourceType, request: web.Request, obj: Json) -> Json:
    if routes.wants_table(request.headers.get("Accept", "")):
        include = request.query.get("includeObject", "Metadata")
        return tables.table(rtype, [obj], list_meta={}, include=include)
    return obj


async def _read(
    state: ServerState, request: web.Request, rtype: ResourceType, target: routes.Target
) -> web.StreamResponse:
    api = state.api
    if target.name:
        return _json(_render(rtype, request, api.get(rtype, target.namespace or "", target.name)))
    opts = routes.list_options(request.query)
    flt = _filter(target, opts)
    if opts.watch:
        return await _watch(state, request, rtype, flt, opts)
    listed = api.list(rtype, flt, limit=opts.limit, cont=opts.cont)
    if routes.wants_table(request.headers.get("Accept", "")):
        include = request.query.get("includeObject", "Metadata")
        return _json(
            tables.table(rtype, listed["items"], list_meta=listed["metadata"], include=include)
        )
    return _json(listed)


async def _watch(
    state: ServerState,
    request: web.Request,
    rtype: ResourceType,
    flt: selectors.Filter,
    opts: routes.ListOptions,
) -> web.StreamResponse:
    api = state.api
    stream = WatchStream(api.store, key=rtype.key, flt=flt)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    as_table = routes.wants_table(request.headers.get("Accept", ""))

    async def send(kind: str, obj: Json) -> None:
        if kind != "ERROR" and kind != "BOOKMARK":
            obj = api.present(rtype, obj)
            if as_table:
                obj = tables.table(rtype, [obj], list_meta={}, include="Object")
        await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    try:
        initial = stream.start(opts.resource_version)
    except errors.Expired as exc:
        await response.prepare(request)
        await send("ERROR", exc.to_status())
        return response
    state.streams.add(stream)
    if state.frozen:
        stream.freeze()
    await response.prepare(request)
    deadline = time.monotonic() + opts.timeout_seconds if opts.timeout_seconds else None
    try:
        for kind, obj in [] if stream.frozen else initial:
            await send(kind, obj)
        await _pump(state, stream, send, deadline=deadline, opts=opts, rtype=rtype)
    except errors.Expired as exc:
        await send("ERROR", exc.to_status())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        stream.close()
        state.streams.discard(stream)
    return response


async def _pump(
    state: ServerState,
    stream: WatchStream,
    send: Any,
    *,
    deadline: float | None,
    opts: routes.ListOptions,
    rtype: ResourceType,
) -> None:
    while not state.stopping.is_set():
        wait = state.bookmark_interval if opts.bookmarks else 1.0
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return
        event = await stream.next_event(max(wait, 0.0))
        if stream.frozen:  # test hook: silent and open until the server stops
            await state.stopping.wait()
            return
        if event is not None:
            await send(*event)
        elif opts.bookmarks and stream.queue.empty():
            await send(
                "BOOKMARK",
                {
                    "kind": rtype.kind,
                    "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(state.api.store.rv)},
                },
            )


async def _write(
    state: ServerState, request: web.Request, rtype: ResourceType, target: routes.Target
) -> web.Response:
    api, ns, name = state.api, target.namespace or "", target.name
    strict = request.query.get("fieldValidation", "") == "Strict"
    if request.query.get("dryRun"):
        raise errors.BadRequest("dryRun is not supported by this API server double")
    if request.method == "POST" and not name and not target.subresource:
        return _json(api.create(rtype, ns, await _body(request), strict=strict), 201)
    if request.method == "PUT" and name:
        return _json(
            api.update(
                rtype, ns, name, await _body(request), subresource=target.subresource, strict=strict
            )
        )
    if request.method == "PATCH" and name:
        kind = routes.patch_type(request.content_type)
        return _json(
            api.patch(
                rtype,
                ns,
                name,
                patch_type=kind,
                body=await _body(request),
                subresource=target.subresource,
                strict=strict,
            )
        )
    if request.method == "DELETE" and name and not target.subresource:
        return _json(api.delete(rtype, ns, name, await _body(request) or None))
    if request.method == "DELETE" and not name:
        opts = routes.list_options(request.query)
        return _json(api.delete_collection(rtype, _filter(target, opts)))
    raise errors.MethodNotAllowed(
        f"the server does not allow this method on the requested resource ({request.method})"
    )


async def handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests.append(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "user_agent": request.headers.get("User-Agent", ""),
        }
    )
    try:
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if request.path == "/openapi/v2" and request.method == "GET":
            # an empty protobuf Document: kubectl then validates nothing on the client
            # side and builds strategic merge patches from its compiled-in types
            return web.Response(body=b"", content_type=OPENAPI_V2_PB)
        if request.path.startswith("/openapi/v3") and request.method == "GET":
            return _openapi_v3(state, request.path)
        if request.path == "/_podwall/expire-watches" and request.method == "POST":
            state.expire_watches()
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if request.path == "/_podwall/freeze-watches" and request.method in ("POST", "DELETE"):
            state.freeze_watches(request.method == "POST")  # DELETE thaws
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if request.path == "/_podwall/requests" and request.method == "GET":
            return _json({"items": state.requests})  # the request log (benchmarks, audits)
        if request.method == "GET":
            found = _discovery(state, request)
            if found is not None:
                return _json(found)
        target = routes.parse_path(request.path)
        if target is None or not target.plural:
            raise errors.NotFound("the server could not find the requested resource")
        rtype = _resolve(state, target)
        if request.method == "GET":
            return await _read(state, request, rtype, target)
        return await _write(state, request, rtype, target)
    except errors.ApiError as exc:
        return _error(exc)
    except Exception as exc:  # the boundary: a bug answers 500, the server lives on
        log.exception("%s %s failed", request.method, request.path)
        return _error(errors.ApiError(f"internal error: {type(exc).__name__}: {exc}"))


def _openapi_v3(state: ServerState, path: str) -> web.Response:
    """``/openapi/v3`` and ``/openapi/v3/apis/<group>/<version>`` (see ``openapi``)."""
    registry = state.api.registry
    parts = [p for p in path.split("/") if p][2:]
    if not parts:
        return _json(openapi.index(registry))
    found = None
    if len(parts) == 3 and parts[0] == "apis":
        found = openapi.group_document(registry, parts[1], parts[2])
    if found is None:
        raise errors.NotFound("the server could not find the requested resource")
    return _json(found)


def make_app(state: ServerState) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
