"""Who is asking, and may they: sessions for pages, API tokens for the API and CLI, CSRF, the setup token.

`Gate` (on the app under ``keys.GATE``) finds the user of a request from its
session cookie or its ``Authorization: Bearer`` token and applies
`users.may`. A request made with a session cookie that changes anything must
carry the session's CSRF token in ``X-CSRF-Token`` (the dashboard's script
sends it from the page's ``<meta name="csrf-token">``); token requests need
none, as no browser sends them by itself.

Until the first user exists the queen is in setup: open when it listens on
loopback only (to this machine's users; queen/web_guard.py keeps other web
sites out), else answering nothing but the setup page. Users are never made
in setup but by the setup path: while no admin exists, the setup token, which
the queen writes to ``data_dir/setup-token`` (readable by its owner only) and
which `apiary user add` reads on the queen's machine, makes one.

Passwords are checked off the event loop, a few at a time (`Passwords`), and
failed sign-ins are throttled per address and per username (queen/throttle.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from apiary.queen.strict_json import json_response
from apiary.queen.throttle import ADDRESS_LIMIT, USER_LIMIT, Throttle
from apiary.queen.users import (
    SAFE,
    Role,
    hash_password,
    is_public,
    may,
    new_secret,
    same,
    split_token,
    token_hash,
    verify_password,
)
from apiary.queen.web_guard import is_loopback_name

from . import keys

log = logging.getLogger(__name__)

COOKIE = "apiary_session"
SESSION_SECONDS = 14 * 24 * 3600
_CACHE_SECONDS = 30.0  # how long a looked-up session or token is trusted without asking the store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Password hashing (argon2id, about 0.1-0.3 s of CPU each) runs in threads, this many at once;
# beyond HASHING_QUEUE waiting, a sign-in is answered 429 at once rather than queued.
HASHING_AT_ONCE = 2
HASHING_QUEUE = 16


class Busy(Exception):
    """Too many password checks are waiting already."""


class Passwords:
    """argon2id hashing and verifying off the event loop, at most HASHING_AT_ONCE at a time."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(HASHING_AT_ONCE)
        self._waiting = 0
        self._dummy: str | None = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._waiting >= HASHING_QUEUE:
            raise Busy()
        self._waiting += 1
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` matches; None (no such user) costs the same time and is False."""
        if stored_hash is None:
            if self._dummy is None:
                self._dummy = await self.hash(new_secret())
            await self._run(verify_password, self._dummy, password)
            return False
        return bool(await self._run(verify_password, stored_hash, password))


class Gate:
    """The queen's door: identities, the setup state, and the access rule applied to each request."""

    def __init__(self, data_path: Path, http_host: str, anonymous_read: bool) -> None:
        self.anonymous_read = anonymous_read
        self.loopback = is_loopback_name(http_host)
        self.users_exist: bool | None = None  # known after the first request
        self.admin_exists: bool | None = None
        self.refreshed = 0.0
        self.setup_file = data_path / "setup-token"
        self.passwords = Passwords()
        self.by_address = Throttle(ADDRESS_LIMIT)
        self.by_user = Throttle(USER_LIMIT)
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def refresh(self, store: Any) -> None:
        """Read whether users and an admin exist; while no admin does, the setup token is on disk."""
        # Noted before asking: requests that come meanwhile use what is known, as they do for the rest of
        # the second, instead of asking too (a burst of 20 clients' triggers: ~40 counts a second, ~1 ms each).
        self.refreshed = time.monotonic()
        self.users_exist = await store.count_users() > 0
        self.admin_exists = await store.count_users(Role.ADMIN.value) > 0
        if not self.admin_exists:
            self.setup_token()
        else:
            self.setup_file.unlink(missing_ok=True)  # left over (an admin was made elsewhere): no use to anyone

    def setup_token(self) -> str:
        """The one-time token that makes the first admin; written to data_dir/setup-token."""
        if self.setup_file.exists():
            return self.setup_file.read_text().strip()
        token = new_secret()
        fd = os.open(self.setup_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return token

    def setup_done(self) -> None:
        self.users_exist = self.admin_exists = True
        self.setup_file.unlink(missing_ok=True)

    def forget(self) -> None:
        """Users, sessions or tokens changed: look them up again."""
        self._cache.clear()

    async def identity(self, request: web.Request) -> dict[str, Any] | None:
        """{"user", "uid", "role", "csrf" (sessions only), "via"} of the request, or None."""
        store = request.app[keys.STORE]
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            parts = split_token(header[7:].strip())
            if parts is None:
                return None
            cached = self._cached(f"t:{parts[0]}")
            if cached is not False:
                found = cached
            else:
                doc = await store.get_token(parts[0])
                found = doc and {"user": doc["user"], "hash": doc["hash"]}
                self._cache[f"t:{parts[0]}"] = (time.monotonic(), found)
            if not found or not same(found["hash"], token_hash(parts[1])):
                return None
            return await self._with_role(store, found["user"], "token", None)
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None
        cached = self._cached(f"s:{session_id}")
        if cached is not False:
            found = cached
        else:
            doc = await store.get_session(session_id)
            found = doc and {"user": doc["user"], "csrf": doc["csrf"], "expires": doc["expires"]}
            self._cache[f"s:{session_id}"] = (time.monotonic(), found)
        if not found or found["expires"] < time.time():
            return None
        return await self._with_role(store, found["user"], "session", found["csrf"])

    def _cached(self, key: str) -> Any:
        entry = self._cache.get(key)
        if entry is None or time.monotonic() - entry[0] > _CACHE_SECONDS:
            if len(self._cache) > 10_000:
                self._cache.clear()
            return False
        return entry[1]

    async def _with_role(self, store: Any, user: str, via: str, csrf: str | None) -> dict[str, Any] | None:
        cached = self._cached(f"u:{user}")
        if cached is False:
            doc = await store.get_user(user)
            cached = doc and {"role": doc["role"], "uid": doc.get("uid")}
            self._cache[f"u:{user}"] = (time.monotonic(), cached)
        if not cached:
            return None
        # uid: the user's own id (store/people.py), what what they own is owned by; their name can be reused.
        return {"user": user, "uid": cached["uid"], "role": Role(cached["role"]), "csrf": csrf, "via": via}


def _wants_html(request: web.Request) -> bool:
    return not request.path.startswith(("/api/", "/parts/", "/ws", "/metrics")) and request.method in SAFE


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    gate = request.app[keys.GATE]
    if gate.users_exist is None or (not gate.users_exist and time.monotonic() - gate.refreshed > 1.0):
        # In setup, asked again each second: users may come from elsewhere (another queen on the store).
        await gate.refresh(request.app[keys.STORE])
    request["identity"] = None
    if not gate.users_exist:
        if request.path.startswith("/api/v1/users") and request.method not in SAFE:
            # The first user is the owner's admin: only the setup path (and its token) makes one.
            return json_response({"error": "this queen has no admin yet: make one with `apiary user add NAME "
                                           "--data-dir DATA_DIR` on the queen's machine, or at /setup with the "
                                           "setup token from its data dir", "field": "username"}, status=403)
        if gate.loopback or is_public(request.path):
            return await handler(request)  # setup: open on loopback; elsewhere only the setup page
        if _wants_html(request):
            raise web.HTTPSeeOther("/setup")
        return json_response({"error": "this queen has no users yet: make the first admin (apiary user add, "
                                       "or the /setup page)"}, status=401)
    identity = await gate.identity(request)
    request["identity"] = identity
    role = identity["role"] if identity else None
    if not may(role, request.method, request.path, gate.anonymous_read):
        if identity is None:
            if _wants_html(request):
                raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
            return json_response({"error": "sign in first: a session, or an API token as "
                                           "'Authorization: Bearer apiary_…'"}, status=401)
        return json_response({"error": f"a {role.value} may not do this" if role else "not allowed"},
                             status=403)
    if identity and identity["via"] == "session" and request.method not in SAFE and not is_public(request.path):
        if not same(request.headers.get("X-CSRF-Token", ""), identity["csrf"] or ""):
            return json_response({"error": "missing or wrong X-CSRF-Token; reload the page"}, status=403)
    return await handler(request)
