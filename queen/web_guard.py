"""What keeps other web sites out: cross-site requests, foreign Host names, and the browser's own guards.

A browser sends the user's cookies with a request whatever page asks for it,
and a page on any site can make it reach a queen on 127.0.0.1. Only headers
the browser sets itself say where a request comes from, so every request is
checked against them (`refusal`, a pure decision; `web_guard_middleware`
applies it before anything else runs):

1. **Host.** A queen bound to loopback answers only to loopback names
   (localhost, 127.0.0.0/8, ::1) and the host of ``public_url``. Otherwise a
   site whose name resolves to 127.0.0.1 (DNS rebinding) would be "same
   origin" as the queen in the browser's eyes.
2. **Origin.** A request that changes state (any method but GET, HEAD,
   OPTIONS) or opens the WebSocket must come from the queen's own origin:
   ``Origin`` equal to ``public_url``'s origin or to the scheme and Host the
   request was made to; without ``Origin``, ``Sec-Fetch-Site`` must be
   ``same-origin`` (or ``none``: typed by the user). A request with neither
   is not from a browser (curl, the CLI, a script), and its credentials
   decide as usual. This holds with or without users (setup mode too).
3. **Content-Type.** A state-changing API request with a body must say
   ``application/json`` (415 otherwise): the types a page may send without
   asking the server first (text/plain, forms) are never read as JSON. An
   empty body (``POST /jobs/ID/cancel``) needs no type.

Webhooks (``/hooks/``) are exempt from all three: forges post them from
elsewhere, and each plugin checks the forge's signature. Signed-in requests
also carry the session's CSRF token (queen/auth.py): same origin *and* token.

Every answer carries `SECURITY_HEADERS`: a Content-Security-Policy with no
inline script and no framing, ``nosniff`` and a same-origin referrer policy.
The ideas are OWASP's (Cross-Site Request Forgery Prevention Cheat Sheet:
"verifying origin with standard headers", "Fetch Metadata"; the DNS
rebinding defence is the one Jupyter and webpack-dev-server use).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from apiary.queen.strict_json import json_response

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOG_BURST, LOG_WINDOW = 20, 10.0
WEBHOOKS = "/hooks/"
WEBSOCKET = "/ws"

# No inline script or style, nothing from elsewhere, no plugins, no <base>, never in a frame.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback_name(host: str) -> bool:
    """localhost, NAME.localhost, 127.0.0.0/8 or ::1 (brackets allowed)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, default ports left out (as browsers send Origin)."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port and port != default else "")


class Policy:
    """Where this queen is reached: its public origin (``public_url``) and whether it listens on loopback only."""

    def __init__(self, public_url: str, loopback_only: bool) -> None:
        self.public_origin = origin_of(public_url) if public_url else ""
        self.public_host = urlsplit(public_url).hostname or "" if public_url else ""
        self.loopback_only = loopback_only

    def refusal(self, method: str, path: str, scheme: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """(HTTP status, why) when this request must be refused, else None. No I/O."""
        if path.startswith(WEBHOOKS):
            return None
        host = headers.get("Host")
        if host is not None and any(c in host for c in "@/\\ \t"):
            return 400, f"Host: {host[:100]!r} is not a host name"
        if host is not None and self.loopback_only:
            name = urlsplit(f"//{host}").hostname or ""
            if not is_loopback_name(name) and name != self.public_host.lower():
                return 421, (f"this queen answers to localhost and 127.0.0.1, not {host!r}: set [queen] public_url "
                             "to the address people use to reach it")
        if method in SAFE_METHODS and path != WEBSOCKET:
            return None
        origin = headers.get("Origin")
        if origin is not None:
            own = {o for o in (self.public_origin, origin_of(f"{scheme}://{host}") if host else "") if o}
            if origin.strip().lower() not in own:  # as browsers send it: scheme://host[:port], nothing more
                hint = "" if self.public_origin else " (behind a proxy, set [queen] public_url to its address)"
                return 403, f"cross-site request refused: it comes from {origin!r}, not from this queen's pages{hint}"
        else:
            site = headers.get("Sec-Fetch-Site")
            if site is not None and site not in ("same-origin", "none"):
                return 403, f"cross-site request refused: the browser says it comes from a {site} page"
        has_body = headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in headers
        if method not in SAFE_METHODS and path.startswith("/api/") and has_body:
            media = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return 415, f"Content-Type: the API takes a body as application/json, not {media or 'untyped'}"
        return None


def web_guard_middleware(policy: Policy) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def web_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = policy.refusal(request.method, request.path, request.scheme, request.headers)
        if refused is not None:
            status, why = refused
            # Each refusal is logged, up to LOG_BURST in LOG_WINDOW seconds: a flood must not flood the log.
            now = time.monotonic()
            if now - said[0] >= LOG_WINDOW:
                if said[2]:
                    log.warning("%d more requests refused in %g s, not logged one by one", said[2], LOG_WINDOW)
                said[:] = [now, 0, 0]
            if said[1] < LOG_BURST:
                said[1] += 1
                log.warning("%s %s refused (%d): %s", request.method, request.path, status, why)
            else:
                said[2] += 1
            return json_response({"error": why}, status=status)
        return await handler(request)

    said: list[Any] = [float("-inf"), 0, 0]  # the window's start, refusals logged in it, and not logged
    return web_guard


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer (pages, API, static files, errors) carries SECURITY_HEADERS."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
