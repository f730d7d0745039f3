"""A stand-in for a forge's API, and a way to send it webhooks as a forge would.

`FakeForge` is a real HTTP server on 127.0.0.1 (a port from the OS) that
answers every request 201 and keeps what it was sent, so a test can check the
commit statuses a plugin posted. `send_hook` posts a payload to a queen's
``/hooks/<plugin>/<repo>`` with the headers a forge sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any, Self

import aiohttp
from aiohttp import web

from tests.cluster import Cluster


@dataclasses.dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the JSON body, or the text if it is not JSON


class FakeForge:
    """An HTTP server that records each request; use as ``async with FakeForge() as forge``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.url = ""
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        async with self._arrived:
            self.received.append(Received(request.method, request.path_qs, dict(request.headers), body))
            self._arrived.notify_all()
        return web.json_response({"id": len(self.received)}, status=201)

    async def wait(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The first `count` requests, once they have arrived."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.received) >= count), timeout)
            return self.received[:count]


async def send_hook(cluster: Cluster, plugin: str, repo: str, body: bytes | dict[str, Any],
                    headers: dict[str, str]) -> tuple[int, str]:
    """POST a webhook to the queen; the status and the text of the answer."""
    assert cluster.http is not None
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    base = cluster.api.removesuffix("/api/v1")
    async with cluster.http.post(f"{base}/hooks/{plugin}/{repo}", data=data,
                                 headers={"Content-Type": "application/json", **headers},
                                 timeout=aiohttp.ClientTimeout(total=30)) as resp:
        return resp.status, await resp.text()
