"""`logcount serve`: the dashboard, the JSON API, /openapi.json, /healthz and /metrics, as
one Starlette (ASGI) application served by uvicorn.

Read-only: every answer is read from Redis and the store through `Counts`, the library
the commands use. The Redis and SQL clients are synchronous, so each request runs in
Starlette's thread pool; the dashboard's change feed (/api/events, server-sent events
read with `fetch`, so it can carry the token) waits on a timer in the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from logcount.errors import LogcountError, RedisUnavailable, StoreError
from logcount.serve import page
from logcount.serve.endpoints import ENDPOINTS, Endpoint, openapi
from logcount.serve.metrics import render_metrics
from logcount.serve.params import PARAMS, BadParameter, parse_args
from logcount.serve.reuse import MAX_AGE, Answers, Versions

# What a browser loads before it has a token: the page and its script hold no data.
PUBLIC = {"/", "/dashboard.js", "/dashboard.css"}
EVENTS_POLL = 0.5  # seconds between two looks at a site's totals for the change feed
EVENTS_PING = 10.0  # seconds between keep-alive comments when nothing changes
API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _json(body: Any, status: int = 200) -> Response:
    """A JSON response of `body`, or of `body` as it is when it is JSON text already."""
    text = body if isinstance(body, str) else _dumps(body)
    return Response(text, status, headers=API_HEADERS, media_type="application/json")


def _error(status: int, message: str, parameter: str | None = None) -> Response:
    body = {"error": message}
    if parameter:
        body["parameter"] = parameter
    return _json(body, status)


def _answer(call: Callable[[], Any]) -> Response | None:
    """Run a library call; its errors become 400 (a parameter), 503 (Redis, the store);
    None when it has no answer (not kept)."""
    try:
        answer = call()
        return None if answer is None else _json(answer)
    except BadParameter as exc:
        return _error(400, str(exc), exc.parameter)
    except (RedisUnavailable, StoreError) as exc:
        return _error(503, str(exc))


def api_route(
    endpoint: Endpoint, counts: Any, answers: Answers, versions: Versions
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint's route. An answer kept (reuse.py) is looked up in the event loop (one
    HMGET); a report is computed in the thread pool (Redis and SQL calls block)."""

    def key_of(request: Request) -> Any:
        return (request.url.path, tuple(sorted(request.query_params.multi_items())))

    def kept(request: Request) -> Any:
        args = parse_args(endpoint.params, request.query_params, request.path_params, counts)
        if not endpoint.reuse:
            return None
        version = versions.get(args.get("site") or counts.site)
        return answers.get(key_of(request), version)

    def compute(request: Request) -> Any:
        args = parse_args(endpoint.params, request.query_params, request.path_params, counts)
        if not endpoint.reuse:
            return handle(args)
        version = versions.get(args.get("site") or counts.site)
        answer = _dumps(handle(args))  # kept as text: a reuse need not encode it again
        answers.put(key_of(request), version, answer)
        return answer

    def handle(args: dict[str, Any]) -> Any:
        try:
            return endpoint.handler(counts, args)
        except (RedisUnavailable, StoreError, BadParameter):
            raise
        except (LogcountError, ValueError) as exc:  # what no parameter's own check caught
            named = getattr(exc, "parameter", None) or endpoint.blame or endpoint.params[0]
            raise BadParameter(named, str(exc)) from None

    async def route(request: Request) -> Response:
        response = _answer(lambda: kept(request)) if endpoint.reuse else None
        if response is None:
            response = await run_in_threadpool(_answer, lambda: compute(request))
        assert response is not None
        return response

    return route


class BearerToken:
    """Every request but the page's own files needs `Authorization: Bearer <token>`,
    compared in constant time; else 401."""

    def __init__(self, app: ASGIApp, token: str | None):
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(), self.token)
        if not ok:
            response = _error(401, "missing or wrong token (Authorization: Bearer TOKEN)")
            response.headers["WWW-Authenticate"] = "Bearer"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    counts: Any,
    token: str | None = None,
    cors_origin: str | None = None,
    reuse_seconds: float = MAX_AGE,
) -> Starlette:
    """The application over `counts` (a Counts); `token`: required of every API request;
    `cors_origin`: the one origin allowed to read the API from another site's page;
    `reuse_seconds`: how long an answer may be reused while nothing was counted."""

    async def healthz(request: Request) -> Response:
        health = await run_in_threadpool(counts.health)
        failed = {k: v for k, v in health.items() if v not in ("ok", "none")}
        return _json({"ok": not failed, **health}, 503 if failed else 200)

    async def metrics(request: Request) -> Response:
        try:
            body = await run_in_threadpool(render_metrics, counts)
        except (RedisUnavailable, StoreError) as exc:
            return _error(503, str(exc))
        return Response(body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def spec(request: Request) -> Response:
        return _json(openapi(EXTRA_PATHS))

    async def events(request: Request) -> Response:
        try:
            args = parse_args(("site",), request.query_params, {}, counts)
        except BadParameter as exc:
            return _error(400, str(exc), exc.parameter)
        site = args["site"] or counts.site
        return StreamingResponse(
            _changes(counts, site, request, versions),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    answers, versions = Answers(reuse_seconds), Versions(counts.totals_version)
    routes = [Route(e.path, api_route(e, counts, answers, versions)) for e in ENDPOINTS]
    routes += [
        Route("/", lambda r: page.dashboard_response(counts.config)),
        Route("/dashboard.js", lambda r: page.asset_response("dashboard.js")),
        Route("/dashboard.css", lambda r: page.asset_response("dashboard.css")),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/openapi.json", spec),
        Route("/api/events", events),
    ]
    middleware = []
    if cors_origin:  # outermost: a preflight carries no token
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=[cors_origin],
                allow_methods=["GET"],
                allow_headers=["Authorization"],
            )
        )
    middleware.append(Middleware(BearerToken, token=token))

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no such page: {request.url.path}")

    async def no_method(request: Request, exc: Exception) -> Response:
        return _error(405, "read-only: GET only")

    async def failed(request: Request, exc: Exception) -> Response:
        # A bug: one line, no traceback to the client (uvicorn logs it on stderr)
        return _error(500, f"internal error ({type(exc).__name__})")

    handlers = {404: not_found, 405: no_method, 500: failed}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


async def _changes(
    counts: Any, site: str, request: Request, versions: Versions
) -> AsyncIterator[str]:
    """Server-sent events: `change` when the site's monotonic totals move (new lines
    counted), `unavailable` while Redis cannot be read, a comment now and then."""
    last: Any = None
    quiet = 0.0
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        try:
            now = (await run_in_threadpool(counts.lifetime, [site]))[site]
            if now != last:
                versions.forget(site)  # the page reloads next: it must see the change
                yield f"event: change\ndata: {json.dumps({'hits': now.get('hits', 0)})}\n\n"
                last, quiet = now, 0.0
        except (RedisUnavailable, StoreError) as exc:
            if last != "unavailable":
                yield f"event: unavailable\ndata: {json.dumps({'error': str(exc)})}\n\n"
                last = "unavailable"
        quiet += EVENTS_POLL
        if quiet >= EVENTS_PING:
            yield ": ping\n\n"
            quiet = 0.0
        await asyncio.sleep(EVENTS_POLL)


EXTRA_PATHS: dict[str, Any] = {
    "/api/events": {
        "get": {
            "summary": "Server-sent events for the dashboard: `change` when lines of the site "
            "were counted, `unavailable` while Redis cannot be read; never ends",
            "operationId": "api_events",
            "parameters": [PARAMS["site"].openapi()],
            "responses": {
                "200": {
                    "description": "An event stream",
                    "content": {
                        "text/event-stream": {"example": 'event: change\ndata: {"hits": 1204}\n\n'}
                    },
                },
                "400": {"description": "A bad parameter"},
                "401": {"description": "A token is required"},
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Redis and the store reachable: 200, else 503 naming the one that failed",
            "operationId": "healthz",
            "responses": {
                "200": {
                    "description": "Both reachable (store: none before any rollup)",
                    "content": {
                        "application/json": {"example": {"ok": True, "redis": "ok", "store": "ok"}}
                    },
                },
                "401": {"description": "A token is required"},
                "503": {"description": "Redis or the store cannot be reached"},
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus text format: monotonic totals per site, readers' health",
            "operationId": "metrics",
            "responses": {
                "200": {"description": "OK", "content": {"text/plain": {}}},
                "401": {"description": "A token is required"},
                "503": {"description": "Redis cannot be reached"},
            },
        }
    },
}
