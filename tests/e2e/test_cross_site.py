"""A page from another web site, open in the same browser, can neither change nor read anything on a queen.

What people rely on: a queen on 127.0.0.1 can be reached by every page their
browser shows, and the browser hands the queen's session cookie to requests
those pages make — SameSite=Lax does not tell ports apart, so a page on
127.0.0.1:OTHER is the *same site* as the queen at 127.0.0.1:PORT. Before the
first user exists a loopback queen needs no sign-in at all. So all that keeps
a page from elsewhere out is the queen's own guard (queen/web_guard.py: the
Origin / Sec-Fetch-Site of state-changing requests and of the WebSocket, the
JSON-only Content-Type; queen/auth.py: the session's CSRF token) and the
browser's CORS rules, which the queen never relaxes.

Here a real Chromium opens a page served from another port of 127.0.0.1 and
tries what a page can: fetch in no-cors mode and sendBeacon with text/plain
bodies, auto-submitted forms (text/plain and urlencoded), a CORS fetch with
JSON (which needs a preflight), the WebSocket, and reading answers. Each is
tried against a queen in setup (no users) and against one whose admin is
signed in in the same browser. Each request the browser sends must reach the
queen and be logged there as refused — so a pass cannot come from a browser
that sent nothing — and afterwards no repository, job, user, token or session
is new, and the page has read nothing. The very same requests made from the
queen's own pages work, so these checks do see a change when there is one.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser import base_url, browser  # noqa: F401  (fixtures)
from tests.cluster import Cluster

REPO = "app"
PIPELINE = 'stages: [{name: s, steps: ["true"]}]'
EVIL_REPO = json.dumps({"name": "evil", "pipeline": "stages: [{name: a, steps: [id]}]"})
EVIL_ADMIN = json.dumps({"username": "evil", "password": "evil's long password", "role": "admin"})
WRONG_SETUP = json.dumps({"token": "a guess", "username": "evil", "password": "evil's long password"})
MALLORY = {"username": "mallory", "password": "mallory's long pw"}

Read = Callable[[str], Awaitable[Any]]


# -- the other site ---------------------------------------------------------------------------

class Elsewhere:
    """Another web site: pages (with inline script, no guard of its own) on another port of 127.0.0.1."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {"": "<!doctype html><title>elsewhere</title><p>Just another site.</p>"}
        self.origin = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.origin = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        html = self.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    def form(self, name: str, action: str, enctype: str, field: tuple[str, str]) -> str:
        """A page that posts a form to `action` into a hidden frame as soon as it loads; its address."""
        self.pages[name] = (
            "<!doctype html><title>You won a prize</title>"
            '<iframe name="sink" hidden></iframe>'
            f'<form method="post" action="{action}" enctype="{enctype}" target="sink">'
            f"<input type=\"hidden\" name='{field[0]}' value='{field[1]}'></form>"
            "<script>document.forms[0].submit()</script>")
        return f"{self.origin}/{name}"


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    site = Elsewhere()
    await site.start()
    try:
        yield site
    finally:
        await site.stop()


# -- what the page runs -------------------------------------------------------------------------

FETCH = """async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    return {answered: true, type: r.type, status: r.status, body: await r.text()};
  } catch (e) {
    return {answered: false, error: String(e)};
  }
}"""

BEACON = "([url, body]) => navigator.sendBeacon(url, body)"

WEBSOCKET = """async ([url, job, wait]) => {
  const seen = {opened: false, error: false, closed: null, messages: []};
  await new Promise((resolve) => {
    const ws = new WebSocket(url);
    const done = () => { ws.close(); resolve(); };
    ws.onopen = () => {
      seen.opened = true;
      ws.send(JSON.stringify({op: "subscribe", topic: "jobs"}));
      ws.send(JSON.stringify({op: "subscribe", topic: "job", job: job, after: 0}));
    };
    ws.onmessage = (e) => {
      seen.messages.push(String(e.data));
      if (String(e.data).includes('"subscribed"') && String(e.data).includes(job)) done();
    };
    ws.onerror = () => { seen.error = true; };
    ws.onclose = (e) => { seen.closed = e.code; resolve(); };
    setTimeout(done, wait);
  });
  return seen;
}"""


def no_cors(body: str) -> dict[str, Any]:
    """What a page may send anywhere without asking first: a "simple" POST, cookies included."""
    return {"method": "POST", "mode": "no-cors", "credentials": "include", "headers": {"Content-Type": "text/plain"},
            "body": body}


def cors_json(body: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A JSON POST, as the dashboard sends it: from elsewhere the browser asks the queen first (preflight)."""
    return {"method": "POST", "mode": "cors", "credentials": "include",
            "headers": {"Content-Type": "application/json", **(headers or {})}, "body": body}


OPAQUE = {"answered": True, "type": "opaque", "status": 0, "body": ""}


# -- what the queen saw and holds -----------------------------------------------------------------

REFUSED = re.compile(r" (GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (\S+) refused \((\d+)\): (.*)$", re.MULTILINE)


class Refusals:
    """The queen's log of refused requests (queen/web_guard.py writes one warning each), read as it grows."""

    def __init__(self, queen: Cluster, origin: str) -> None:
        self.queen = queen
        self.origin = origin
        self.seen = 0

    def all(self) -> list[tuple[str, str]]:
        assert self.queen.queen is not None
        text = self.queen.queen.stderr.read_text(errors="replace")
        return [(f"{m[1]} {m[2]} {m[3]}", m[4]) for m in REFUSED.finditer(text)]

    async def expect(self, *expected: str, timeout: float = 10.0) -> None:
        """Exactly these requests ("POST /api/v1/repos 403") were refused since the last call, as cross-site
        requests from the other site."""
        deadline = time.monotonic() + timeout
        while len(new := self.all()[self.seen:]) < len(expected) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.seen += len(new)
        assert Counter(line for line, _ in new) == Counter(expected), (
            f"the queen refused {[line for line, _ in new]}, expected {list(expected)}\n{self.queen.all_logs()}")
        for _, why in new:
            assert why.startswith(f"cross-site request refused: it comes from '{self.origin}'"), why


class Wire:
    """What Chromium really sent to the queen and got back (cookies included), from the DevTools protocol."""

    def __init__(self) -> None:
        self.requests: dict[str, tuple[str, str]] = {}  # id: (method, URL)
        self.headers: dict[str, dict[str, str]] = {}  # id: request headers, as sent
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}  # id: (status, response headers)

    @classmethod
    async def listen(cls, page: Page) -> Wire:
        wire = cls()
        cdp = await page.context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", wire._request)
        cdp.on("Network.requestWillBeSentExtraInfo", lambda e: wire._headers(e["requestId"], e["headers"]))
        cdp.on("Network.responseReceived", wire._response)
        cdp.on("Network.webSocketCreated",
               lambda e: wire.requests.__setitem__(e["requestId"], ("GET", e["url"].replace("ws://", "http://"))))
        cdp.on("Network.webSocketWillSendHandshakeRequest",
               lambda e: wire._headers(e["requestId"], e["request"]["headers"]))
        cdp.on("Network.webSocketHandshakeResponseReceived", wire._response)
        cdp.on("Network.webSocketFrameError", wire._websocket_refused)
        await cdp.send("Network.enable")
        return wire

    async def answered(self, method: str, url: str, origin: str, count: int = 1,
                       timeout: float = 5.0) -> list[tuple[dict[str, str], int | None]]:
        """`sent`, once `count` such requests have their answers (DevTools' events come a little after the
        page's promises) or `timeout` is over."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.sent(method, url, origin)
            if (len(seen) >= count and all(status is not None for _, status in seen)) or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.05)

    def _request(self, event: dict[str, Any]) -> None:
        self.requests[event["requestId"]] = (event["request"]["method"], event["request"]["url"])

    def _headers(self, request_id: str, headers: dict[str, str]) -> None:
        self.headers.setdefault(request_id, {}).update({k.lower(): v for k, v in headers.items()})

    def _response(self, event: dict[str, Any]) -> None:
        response = event["response"]
        self.answers[event["requestId"]] = (response["status"], {k.lower(): v for k, v in response["headers"].items()})

    def _websocket_refused(self, event: dict[str, Any]) -> None:
        # "Error during WebSocket handshake: Unexpected response code: 403"
        code = re.search(r"response code: (\d+)", event["errorMessage"])
        if code:
            self.answers[event["requestId"]] = (int(code[1]), {})

    def _ids(self, method: str, url: str, origin: str) -> list[str]:
        return [i for i, sent in self.requests.items()
                if sent == (method, url) and self.headers.get(i, {}).get("origin") == origin]

    def sent(self, method: str, url: str, origin: str) -> list[tuple[dict[str, str], int | None]]:
        """Each request `method url` that a page of `origin` sent: its headers and the status of the answer."""
        return [(self.headers[i], self.answers[i][0] if i in self.answers else None)
                for i in self._ids(method, url, origin)]

    def preflight_answer(self, url: str, origin: str) -> dict[str, str]:
        """The headers of the queen's answer when the browser asked (OPTIONS) whether `origin` may send to `url`."""
        [i] = self._ids("OPTIONS", url, origin)
        return self.answers[i][1]


async def holdings(read: Read, tokens: bool = False) -> dict[str, set[str]]:
    """Everything a cross-site request could have added: repositories, jobs, users (and the admin's tokens)."""
    held = {"repos": {r["name"] for r in (await read("/repos"))["repos"]},
            "jobs": {j["id"] for j in (await read("/jobs?limit=500"))["jobs"]},
            "users": {u["name"] for u in (await read("/users"))["users"]}}
    if tokens:
        held["tokens"] = {t["id"] for t in (await read("/tokens"))["tokens"]}
    return held


async def new_context(chromium: Browser) -> tuple[BrowserContext, Page]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    return context, await context.new_page()


# -- the attacks ----------------------------------------------------------------------------------

async def other_site_gets_nowhere(page: Page, site: Elsewhere, queen: Cluster, log: Refusals, read: Read,
                                  job: str, more: tuple[tuple[str, str], ...] = (), tokens: bool = False) -> Wire:
    """From a page of `site`, try to change and to read the queen every way a page can; the queen refuses
    each request that reaches it, nothing changes and nothing is read. What went over the wire is returned."""
    q = base_url(queen)
    wire = await Wire.listen(page)
    await page.goto(site.origin + "/")
    before = await holdings(read, tokens)
    jobs = f"/api/v1/repos/{REPO}/jobs"

    # 1. "Simple" requests, sent without asking: no-cors fetch with text/plain bodies, and a beacon.
    posts = [("/api/v1/repos", EVIL_REPO), (jobs, "{}"), ("/api/v1/users", EVIL_ADMIN),
             ("/api/v1/setup", WRONG_SETUP), *more]
    for path, body in posts:
        assert await page.evaluate(FETCH, [q + path, no_cors(body)]) == OPAQUE, path
    assert await page.evaluate(BEACON, [q + jobs, "{}"]) is True
    refused = [path for path, _ in posts] + [jobs]
    await log.expect(*(f"POST {path} 403" for path in refused))
    for path in set(refused):  # and the browser saw those 403s come back
        answers = await wire.answered("POST", q + path, site.origin, refused.count(path))
        assert [status for _, status in answers] == [403] * refused.count(path), path
    assert await holdings(read, tokens) == before

    # 2. Forms that post themselves, text/plain (a body that reads as JSON) and urlencoded.
    await page.goto(site.form("plain", q + jobs, "text/plain", ('{"branch": "main", "x": "', '"}')),
                    wait_until="domcontentloaded")
    await log.expect(f"POST {jobs} 403")
    await page.goto(site.form("urlencoded", q + jobs, "application/x-www-form-urlencoded", ("branch", "main")),
                    wait_until="domcontentloaded")
    await log.expect(f"POST {jobs} 403")
    await page.goto(site.origin + "/")
    assert await holdings(read, tokens) == before

    # 3. JSON, as the queen's own pages send it: the browser asks first, the queen does not allow it,
    # and the POST itself is never sent.
    for path, body in [("/api/v1/repos", EVIL_REPO), (jobs, "{}")]:
        answer = await page.evaluate(FETCH, [q + path, cors_json(body)])
        assert not answer["answered"] and "TypeError" in answer["error"], (path, answer)
        [(asked, status)] = await wire.answered("OPTIONS", q + path, site.origin)
        assert asked["access-control-request-method"] == "POST", asked
        assert status >= 400 and "access-control-allow-origin" not in wire.preflight_answer(q + path, site.origin), status
    assert len(wire.sent("POST", q + "/api/v1/repos", site.origin)) == 1  # the no-cors one of batch 1
    await log.expect()
    assert await holdings(read, tokens) == before

    # Reading: the queen answers GETs (with the cookie, or in setup to anyone on loopback), but the browser
    # shows the other page nothing: not the jobs, not a page of the dashboard (with its CSRF token).
    for path in ("/api/v1/jobs", "/api/v1/repos", "/"):
        answer = await page.evaluate(FETCH, [q + path, {"mode": "cors", "credentials": "include"}])
        assert not answer["answered"] and "TypeError" in answer["error"], (path, answer)
        assert await page.evaluate(FETCH, [q + path, {"mode": "no-cors", "credentials": "include"}]) == OPAQUE
    await log.expect()

    # 4. The WebSocket: it never opens, so no subscription and no message.
    ws_url = q.replace("http://", "ws://") + "/ws"
    seen = await page.evaluate(WEBSOCKET, [ws_url, job, 3000])
    assert seen["opened"] is False and seen["messages"] == [], seen
    assert seen["error"] is True and seen["closed"] == 1006, seen
    await log.expect("GET /ws 403")
    assert [status for _, status in await wire.answered("GET", q + "/ws", site.origin)] == [403]

    assert await holdings(read, tokens) == before
    return wire


async def own_pages_do_it(page: Page, queen: Cluster, log: Refusals, read: Read, job: str,
                          headers: dict[str, str] | None = None, tokens: bool = False) -> None:
    """The control: the same requests from a page of the queen itself work (and the checks see it)."""
    q = base_url(queen)
    before = await holdings(read, tokens)
    await page.goto(q + "/")
    made = await page.evaluate(FETCH, [q + "/api/v1/repos", cors_json(EVIL_REPO, headers)])
    assert (made["answered"], made["status"]) == (True, 201), made
    triggered = await page.evaluate(FETCH, [q + f"/api/v1/repos/{REPO}/jobs", cors_json("{}", headers)])
    assert (triggered["answered"], triggered["status"]) == (True, 201), triggered
    new_job = json.loads(triggered["body"])["id"]
    listed = await page.evaluate(FETCH, [q + "/api/v1/jobs", {}])
    assert listed["status"] == 200 and job in listed["body"]
    seen = await page.evaluate(WEBSOCKET, [q.replace("http://", "ws://") + "/ws", job, 10_000])
    assert seen["opened"] is True, seen
    messages = [json.loads(m) for m in seen["messages"]]
    assert {"type": "subscribed", "topic": "jobs"} in messages, messages
    assert any(m.get("job") == job and m.get("type") == "subscribed" for m in messages), messages
    await log.expect()
    after = await holdings(read, tokens)
    assert after == {**before, "repos": before["repos"] | {"evil"}, "jobs": before["jobs"] | {new_job}}


# -- the two queens -------------------------------------------------------------------------------

async def test_a_queen_in_setup_open_on_loopback_is_closed_to_other_sites(
        queen: Cluster, browser: Browser, elsewhere: Elsewhere) -> None:  # noqa: F811
    await queen.create_pipeline_repo(REPO, PIPELINE)
    job = (await queen.trigger(REPO))["id"]
    setup_token = (queen.tmp / "queen" / "setup-token").read_text()
    log = Refusals(queen, elsewhere.origin)
    context, page = await new_context(browser)
    try:
        await other_site_gets_nowhere(page, elsewhere, queen, log, queen.get, job)
        assert (await queen.get("/me")) == {"user": None, "setup": True}
        assert (queen.tmp / "queen" / "setup-token").read_text() == setup_token
        await own_pages_do_it(page, queen, log, queen.get, job)
    finally:
        await context.close()


async def test_an_admin_signed_in_in_the_same_browser_lends_other_sites_nothing(
        cluster: Cluster, browser: Browser, elsewhere: Elsewhere) -> None:  # noqa: F811
    await cluster.start_queen()
    token = await first_admin_token(cluster)

    async def read(path: str) -> Any:
        return await api(cluster, "GET", path, token=token)

    await api(cluster, "POST", "/repos", {"name": REPO, "pipeline": PIPELINE}, token=token, expect=201)
    job = (await api(cluster, "POST", f"/repos/{REPO}/jobs", {}, token=token, expect=201))["id"]
    await api(cluster, "POST", "/users", {**MALLORY, "role": "member"}, token=token, expect=201)
    log = Refusals(cluster, elsewhere.origin)
    q = base_url(cluster)

    context, page = await new_context(browser)
    try:
        await page.goto(q + "/signin")
        await page.get_by_label("Username").fill("ada")
        await page.get_by_label("Password").fill("correct horse")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(q + "/")
        await expect(page.locator(".who")).to_contain_text("ada (admin)")
        session = await session_cookie(context, q)
        assert session["sameSite"] == "Lax" and session["httpOnly"]

        # Besides the attacks on a queen in setup: signing the browser in as someone else (mallory, whose
        # password the other site knows), and making an API token for the admin.
        wire = await other_site_gets_nowhere(page, elsewhere, cluster, log, read, job, tokens=True,
                                             more=(("/api/v1/session", json.dumps(MALLORY)),
                                                   ("/api/v1/tokens", json.dumps({"name": "evil"}))))

        # The browser did hand the admin's session cookie to the other site's requests (the same site:
        # only the port differs): the queen's refusal is all that stopped them.
        for path in ["/api/v1/repos", f"/api/v1/repos/{REPO}/jobs", "/api/v1/session"]:
            headers, _ = wire.sent("POST", q + path, elsewhere.origin)[0]
            assert f"apiary_session={session['value']}" in headers.get("cookie", ""), (path, headers)
            assert headers.get("sec-fetch-site") == "same-site", (path, headers)

        # Still the admin, in the same session.
        assert (await session_cookie(context, q))["value"] == session["value"]
        await page.goto(q + "/")
        await expect(page.locator(".who")).to_contain_text("ada (admin)")

        csrf = await page.locator("meta[name=csrf-token]").get_attribute("content")
        assert csrf
        await own_pages_do_it(page, cluster, log, read, job, headers={"X-CSRF-Token": csrf}, tokens=True)
    finally:
        await context.close()


# -- helpers --------------------------------------------------------------------------------------

async def api(queen: Cluster, method: str, path: str, body: Any = None, token: str = "",
              expect: int = 200) -> Any:
    """The queen's API as the CLI calls it: JSON, a bearer token, no browser."""
    assert queen.http is not None
    async with queen.http.request(method, queen.api + path, json=body,
                                  headers={"Authorization": f"Bearer {token}"} if token else {}) as resp:
        payload = await resp.json(content_type=None)
        assert resp.status == expect, f"{method} {path}: {resp.status} {payload}"
        return payload


async def first_admin_token(queen: Cluster) -> str:
    """Make the admin "ada" with the setup token, then an API token of hers."""
    setup_token = (queen.tmp / "queen" / "setup-token").read_text().strip()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(queen.api + "/setup", json={"token": setup_token, "username": "ada",
                                                         "password": "correct horse"}) as resp:
            assert resp.status == 200, await resp.text()
            csrf = (await resp.json())["csrf"]
        async with http.post(queen.api + "/tokens", json={"name": "tests"}, headers={"X-CSRF-Token": csrf}) as resp:
            assert resp.status == 201, await resp.text()
            return str((await resp.json())["token"])


async def session_cookie(context: BrowserContext, url: str) -> dict[str, Any]:
    cookies = [c for c in await context.cookies(url) if c["name"] == "apiary_session"]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])
