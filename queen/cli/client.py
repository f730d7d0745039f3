"""The client side of the queen's API, for `apiary trigger`, `ls`, `logs`, `cancel`, `drones`, `prune`.

`Client` holds the queen's base URL and an aiohttp session; every fault is an
ApiaryError with a one-line message (the queen unreachable, or the API's own
``error`` text). Showing what it gets is apiary.cli.follow's.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from apiary.core.errors import ApiaryError


class ClientError(ApiaryError):
    """A client command could not do what it was asked."""


class Unreachable(ClientError):
    """The queen did not answer; the message names where its address came from (apiary.cli.address)."""

    def __init__(self, url: str, reason: str, origin: str = "") -> None:
        where = f" (from {origin})" if origin else ""
        # A refused connection is the usual case (nothing runs there): the hint says it all.
        because = "" if reason == "connection refused" else f" ({reason})"
        super().__init__(f"no queen answers at {url}{where}{because}: start one with apiary up, "
                         "or give its address with --url")
        self.reason = reason


class ApiError(ClientError):
    """The queen refused a request; the message is the API's ``error``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        # Bad input and unknown names are usage errors (exit 2), as InputError says.
        self.exit_code = 2 if status in (400, 404) else 1


def why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        err = exc.os_error
        return "connection refused" if isinstance(err, ConnectionRefusedError) else (err.strerror or str(err))
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def q(name: str) -> str:
    """`name` as one path segment."""
    return quote(name, safe="")


class Client:
    """The queen at `url` (``http://host:port``), over one HTTP session."""

    def __init__(self, url: str, token: str = "", origin: str = "") -> None:
        self.origin = origin  # where the URL came from: --url, APIARY_CLIENT_URL, a file, default
        self.url = re.sub(r"/api(/v1)?$", "", url.rstrip("/"))  # the API's own URL works too
        # An API token signs every request (and the WebSocket) in as its user.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # No total timeout: a WebSocket lives as long as the job; sock_read bounds a stalled answer.
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
                                             headers=headers)
        self.cookie = ""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.session.close()

    def page(self, job_id: str) -> str:
        """The job's page on the dashboard."""
        return f"{self.url}/jobs/{job_id}"

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON answer to `method` `path` (under /api/v1); ApiError for any 4xx/5xx."""
        try:
            async with self.session.request(method, f"{self.url}/api/v1{path}", json=body, headers=headers) as resp:
                raw = await resp.read()
                if "Set-Cookie" in resp.headers:  # a session (apiary token create): kept for the next request
                    self.cookie = "; ".join(f"{k}={v.value}" for k, v in resp.cookies.items())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(self.url, why(exc), self.origin) from None
        try:
            data = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8: not the API
            data = None
        if isinstance(data, dict) and resp.status < 400:
            return data
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            raise ApiError(data["error"], resp.status)
        raise ApiError(f"{self.url}: HTTP {resp.status} {resp.reason} (is this an Apiary queen?)", resp.status)

    async def download(self, path: str, target: Path | None) -> int:
        """GET `path` (under /api/v1) into the file `target` (None: standard output); the bytes written.

        The file appears whole or not at all: written beside it, then renamed."""
        url = f"{self.url}/api/v1{path}"
        partial = None if target is None else target.with_name(f".{target.name}.part")
        written = 0
        try:
            async with self.session.get(url) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    try:
                        error = json.loads(raw).get("error")
                    except (ValueError, AttributeError):
                        error = None
                    raise ApiError(error or f"{url}: HTTP {resp.status} {resp.reason}", resp.status)
                with contextlib.ExitStack() as files:
                    # A local file, written as the bytes come: blocking writes are what a CLI wants here.
                    out = sys.stdout.buffer if partial is None else files.enter_context(open(partial, "wb"))  # noqa
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        out.write(chunk)
                        written += len(chunk)
                    out.flush()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise Unreachable(self.url, why(exc), self.origin) from None
        except BaseException:
            if partial is not None:
                partial.unlink(missing_ok=True)
            raise
        if partial is not None and target is not None:
            partial.replace(target)
        return written

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/jobs/{q(job_id)}")

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The job's stored events after seq `after`, page by page."""
        while True:
            page = await self.request("GET", f"/jobs/{q(job_id)}/events?after={after}")
            for event in page["events"]:
                yield event
            after = page["last"]
            if not page["more"]:
                return
