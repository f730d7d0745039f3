"""Builds the queen's aiohttp application and runs it.

`init_app(config)` is the one place where the queen is assembled: routes,
error middleware, and its long-lived resources as cleanup contexts (the store,
embedded or not; the hive with its ZeroMQ socket and tasks). `running_queen`
starts it on real sockets and yields the addresses it bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from pymongo.errors import PyMongoError

from apiary.core import __version__
from apiary.core.config import QueenConfig
from apiary.core.errors import ApiaryError, InputError
from apiary.queen import bisects, comments, debugshells, metrics, shards
from apiary.queen.accounts import routes as account_routes
from apiary.queen.api import routes as api_routes
from apiary.queen.approvals import routes as approval_routes, watch_timeouts
from apiary.queen.auth import Gate, auth_middleware
from apiary.queen.cache_api import routes as cache_routes
from apiary.queen.connections import IDLE_FACTOR, MAX_CONNECTIONS, Connections, cap_for, raise_file_limit
from apiary.queen.datalock import data_dir_lock
from apiary.queen.embedded import embedded_store
from apiary.queen.hive import Hive
from apiary.queen.hub import Hub
from apiary.queen.joining import routes as join_routes
from apiary.queen.pages import FILTERS, error_pages
from apiary.queen.pages import routes as page_routes
from apiary.queen.plugin_reactions import plugins_ctx
from apiary.queen.plugin_registry import Plugins
from apiary.queen.plugin_webhooks import webhook
from apiary.queen.recorder import store_problem
from apiary.queen.retention import prune_daily
from apiary.queen.sealing import Sealer
from apiary.queen.spread import watch as watch_spread
from apiary.queen.store import Store
from apiary.queen.strict_json import json_response
from apiary.queen.testreports import routes as test_routes
from apiary.queen.web_guard import (
    Policy,
    add_security_headers,
    is_loopback_name,
    web_guard_middleware,
)
from apiary.queen.ws import websocket

from . import keys, openapi

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except InputError as exc:
        body = {"error": str(exc)}
        if exc.field:
            body["field"] = exc.field
        return json_response(body, status=exc.status)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            reason = "no such endpoint" if exc.status == 404 else exc.reason
            return json_response({"error": reason}, status=exc.status)
        raise
    except ConnectionResetError:  # the client went, or was cut off (queen/connections.py): nobody to answer
        raise web.HTTPBadRequest() from None
    except PyMongoError as exc:  # the store is away (restarting) or cannot write (a full disk): say so
        problem = store_problem(exc)
        log.warning("%s %s: store unavailable: %s", request.method, request.path, problem)
        return json_response({"error": f"the store is unavailable ({problem}); try again shortly"}, status=503,
                             headers={"Retry-After": "2"})
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"error": "internal error; the queen's log has the details"}, status=500)


# Set when the queen begins to stop (on_shutdown, before any cleanup): the embedded store is not restarted then.
_STOPPING = web.AppKey("stopping", asyncio.Event)


async def _stopping(app: web.Application) -> None:
    app[_STOPPING].set()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    async with contextlib.AsyncExitStack() as stack:
        url = config.mongodb_url
        if url == "embedded":
            url = await stack.enter_async_context(embedded_store(config.data_path, app[_STOPPING]))
        store = await Store.connect(url, config.database, Sealer.from_file(config.secrets_key_path))
        stack.push_async_callback(store.close)
        app[keys.STORE] = store
        yield


async def _gate_ctx(app: web.Application) -> AsyncIterator[None]:
    gate = app[keys.GATE]
    await gate.refresh(app[keys.STORE])
    if not gate.users_exist:
        log.info("no users yet%s: make the first admin with `apiary user add NAME --data-dir %s` on this machine, "
                 "or at /setup with the token in %s", " (open to this machine's users until then)"
                 if gate.loopback else "", gate.setup_file.parent, gate.setup_file)
    elif not gate.admin_exists:
        log.warning("this queen has users but no admin: make one with `apiary user add NAME --role admin "
                    "--data-dir %s` on this machine, or at /setup with the token in %s", gate.setup_file.parent,
                    gate.setup_file)
    yield


async def _hive_ctx(app: web.Application) -> AsyncIterator[None]:
    async with Hive(app[keys.CONFIG], app[keys.STORE], app[keys.HUB],
                    queen_secrets=app[keys.PLUGINS].queen_secrets) as hive:
        app[keys.HIVE] = hive
        yield


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(prune_daily(app[keys.STORE]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _web_dir() -> Path:
    """The dashboard's files: beside the package in a clone (or an editable
    install), else where a regular install put them (pyproject's data-files)."""
    beside = Path(__file__).resolve().parent.parent / "web"
    return beside if (beside / "templates").is_dir() else Path(sys.prefix) / "share" / "apiary" / "web"


def init_app(config: QueenConfig, connection_cap: int = MAX_CONNECTIONS) -> web.Application:
    connections = Connections(connection_cap, header_timeout=config.http_timeout,
                              idle_timeout=IDLE_FACTOR * config.http_timeout, body_timeout=config.http_timeout)
    policy = Policy(config.public_url, loopback_only=is_loopback_name(config.http_host))
    # Outermost first: errors become answers; connections are tracked; other sites are refused
    # before anything is read or looked up; then page errors and who is asking.
    app = web.Application(middlewares=[error_middleware, connections.middleware, web_guard_middleware(policy),
                                       error_pages, auth_middleware],
                          client_max_size=MAX_BODY_BYTES)
    app.on_response_prepare.append(add_security_headers)
    app[keys.CONNECTIONS] = connections
    app[keys.CONFIG] = config
    app[keys.GATE] = Gate(config.data_path, config.http_host, config.anonymous_read)
    app[keys.HUB] = Hub()
    app[keys.VERSION] = __version__
    app[_STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stopping)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_gate_ctx)
    app.cleanup_ctx.append(_hive_ctx)
    app.cleanup_ctx.append(_retention_ctx)
    app.cleanup_ctx.append(watch_timeouts)  # approval gates nobody decided on in time (queen/approvals.py)
    app.cleanup_ctx.append(watch_spread)  # child jobs of remote stages: made, folded (queen/spread.py)
    app[keys.PLUGINS] = Plugins.discover()
    app[keys.PLUGIN_CONTEXTS] = {}
    app.cleanup_ctx.append(plugins_ctx)
    app.router.add_post("/hooks/{plugin}/{repo}", webhook)
    app.add_routes(api_routes)
    app.add_routes(approval_routes)  # approve or reject a waiting job's gate
    app.add_routes(test_routes)  # a job's tests, a test's history
    app.add_routes(cache_routes)  # a repository's pipeline caches
    app.add_routes(join_routes)
    comments.setup(app)  # comments on jobs: the API and the job page's pieces
    debugshells.setup(app)  # debug shells in failed jobs: the API and the relay to drones
    bisects.setup(app)  # bisect across drones: the API, the page, the driver
    shards.setup(app)  # test shards: their lists split by past durations (after the spreader's context)
    metrics.setup(app)  # /metrics for Prometheus (admins; or alone on metrics_bind)
    app.router.add_get(openapi.PATH, openapi.serve)
    app.router.add_get("/ws", websocket)
    web_dir = _web_dir()
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(web_dir / "templates"), filters=FILTERS,
                         context_processors=[_who])
    app.router.add_static("/static", web_dir / "static")
    app.add_routes(page_routes)
    app.add_routes(account_routes)
    return app


async def _who(request: web.Request) -> dict[str, Any]:
    """Every page knows who is signed in (and their CSRF token), and whether signing in is possible."""
    return {"me": request.get("identity"), "signin_offered": bool(request.app[keys.GATE].users_exist)}


@dataclasses.dataclass(frozen=True)
class Addresses:
    http: str
    drones: str

    @property
    def api(self) -> str:
        return f"{self.http}/api/v1"


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # A restarted queen takes its port back at once.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ApiaryError(f"cannot listen on {host}:{port} (http_port): {exc.strerror}") from None
    return sock


async def _serve_metrics(app: web.Application, bind: str) -> web.AppRunner:
    """GET /metrics alone on `bind` (HOST:PORT, metrics_bind); ApiaryError naming the setting if it cannot listen."""
    host, _, port = bind.rpartition(":")
    runner = web.AppRunner(metrics.listener_app(app), access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    except OSError as exc:
        await runner.cleanup()
        raise ApiaryError(f"cannot listen on {bind} (metrics_bind): {exc.strerror}") from None
    log.info("metrics: http://%s/metrics", bind)
    return runner


URL_FILE = "queen.url"  # in the data dir: the address this queen answers on, for commands on its machine
ENDPOINT_FILE = "queen.endpoint"  # beside it: where drones on its machine connect (apiary drone without --queen)


@contextlib.asynccontextmanager
async def running_queen(config: QueenConfig) -> AsyncIterator[Addresses]:
    """Start the queen on its sockets; yield where it listens; stop it on exit.

    Raises DataDirInUse, having started nothing, when another queen runs on the same data dir.
    """
    # The store, the secrets key and the setup token are the queen's alone.
    config.data_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if config.data_path.stat().st_mode & 0o077:
        config.data_path.chmod(0o700)
        log.info("made %s readable by its owner only (it holds the store and keys)", config.data_path)
    with data_dir_lock(config.data_path):  # before anything starts: one queen (and one store) per data dir
        async with _serving(config) as where:
            yield where


@contextlib.asynccontextmanager
async def _serving(config: QueenConfig) -> AsyncIterator[Addresses]:
    app = init_app(config, cap_for(raise_file_limit()))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                           keepalive_timeout=IDLE_FACTOR * config.http_timeout)
    sock = _listen(config.http_host, config.http_port)
    try:
        await runner.setup()
    except BaseException:
        # Close what did start (the embedded store) before the error goes up.
        await runner.cleanup()
        sock.close()
        raise
    connections = app[keys.CONNECTIONS]
    server = sweeper = None
    metrics_runner: web.AppRunner | None = None
    try:
        # Our own listening server rather than a SockSite: each connection passes through the guard's factory.
        server = await asyncio.get_running_loop().create_server(connections.factory(runner.server), sock=sock,
                                                                backlog=1024)
        sweeper = asyncio.create_task(connections.sweep(runner.server))
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        http = config.public_url.rstrip("/") or f"http://{shown}:{port}"
        app[keys.PLUGINS].base_url = http
        # Where this machine reaches the queen directly: `apiary user add` sends the setup token there only.
        local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, shown)
        (config.data_path / URL_FILE).write_text(f"http://{local}:{port}\n")
        drones = re.sub(r"^tcp://(0\.0\.0\.0|\*):", "tcp://127.0.0.1:", app[keys.HIVE].endpoint)
        (config.data_path / ENDPOINT_FILE).write_text(re.sub(r"^tcp://(\[::\]|::):", "tcp://[::1]:", drones) + "\n")
        if config.metrics_bind:
            metrics_runner = await _serve_metrics(app, config.metrics_bind)
        yield Addresses(http=http, drones=app[keys.HIVE].endpoint)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if sweeper is not None:
            sweeper.cancel()
        if server is not None:
            server.close()
        else:
            sock.close()
        await runner.cleanup()
