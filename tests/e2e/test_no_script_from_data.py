"""No value a member, a forge or a drone controls runs script in another person's browser.

What people rely on: an admin may open any page of the dashboard, and follow any
link on it, whatever the jobs it shows were given. A member (or a forge's
webhook, or a drone) sets every value a page renders: the trigger's author,
message and link, the branch, the commit, a fetched ref, the parameters, the
step titles and commands, the output (ANSI escapes included), the artifacts'
names, a plugin's figures, a failed job's error, a drone's host and plugins;
the admin's own settings (repository URL, provider, default branch…) and the
address bar (``?branch=``, a job id, ``?next=``) too. Each is set to HTML and to
``javascript:``/``data:`` URLs, then a real Chromium signed in as the admin
opens each page, waits for its live parts (the log over the WebSocket, rows and
summaries fetched again as HTML) and clicks each link that stays on the queen.

The Content-Security-Policy would stop an inline handler that got through, so
the pages are checked for what a payload would make: no element or attribute
spelt by it (no ``<img src=x>``, no ``<svg>``, no ``on…=`` attribute, no script
but the dashboard's), no link or source with a ``javascript:``/``data:``/
``vbscript:`` address, ``window.__pwned`` never set, no dialog, and (the
``page`` fixture) no script error and no CSP violation. Each payload is seen
on the page as text, so the checks are not vacuous. A ``javascript:`` or
``data:`` trigger link is refused by the API (400, field ``trigger.url``) and
dropped from a forge's webhook.

Signing in goes back to where the visitor was going (``?next=``), and only ever
to a page of this queen.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import msgpack
import pytest
import zmq
import zmq.asyncio
from playwright.async_api import Browser, BrowserContext, Dialog, Page, expect

from apiary.core.protocol import PROTOCOL_VERSION
from tests.browser import base_url, browser, csp_violation, page, shot  # noqa: F401  (fixtures)
from tests.cluster import FINAL, Cluster

# In text, in a double- and in a single-quoted attribute: each would make an element or a handler.
PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>"\'><svg onload=window.__pwned=1>'
# Where git's rules for a ref name hold (a branch, a fetched ref): no space, '/' only before a letter.
REF_PAYLOAD = '\'"><img/src/onerror=window.__pwned=1><svg/onload=window.__pwned=1>'
# Where a '/' cannot go (a path segment of the URL).
SHORT = "<img src=x onerror=window.__pwned=1>"
SCRIPT_URL = "javascript:window.__pwned=1"
# An http(s) link, so accepted, whose quotes would end the href attribute if not escaped.
QUOTED_URL = 'https://example.com/"><svg/onload=window.__pwned=1>'
REFUSED_URLS = [
    SCRIPT_URL,
    "JavaScript:window.__pwned=1",
    " javascript:window.__pwned=1",
    "\tjava\nscript:window.__pwned=1",
    "javascript://example.com/%0Awindow.__pwned=1",
    "data:text/html,<script>parent.__pwned=1</script>",
    "data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX19wd25lZD0xPC9zY3JpcHQ+",
    "vbscript:msgbox(1)",
    "//evil.example/",
    "https:evil.example",
]
ARTIFACT = "<img src=x onerror=window.__pwned=1>.txt"  # a file name may hold anything but '/'


def _q(text: str) -> str:
    """`text` as a YAML (and JSON) double-quoted string."""
    return json.dumps(text)


# The member's pipeline: every text it gives the page is a payload.
PIPELINE = f"""\
# </textarea>{SHORT} (the settings page shows this text in a textarea)
parameters:
  GREETING:
    default: {_q(PAYLOAD)}
    description: {_q(PAYLOAD)}
artifacts: ["*.txt"]
plugins:
  # Its figures (the failed tests' names, from the report the job wrote) are shown in the summary.
  - name: python
    config: {{venv: false, install: [], test: "", junit: report.xml}}
prepare:
  - title: {_q("write a JUnit report " + SHORT)}
    run: >-
      printf '<testsuite tests="1" failures="1"><testcase classname="%s" name="t"><failure/></testcase></testsuite>'
      '&lt;img src=x onerror=window.__pwned=1&gt;' | tee report.xml
stages:
  - name: show
    steps:
      - title: {_q(PAYLOAD[:80])}
        run: |
          echo "$GREETING"
          echo "branch $APIARY_BRANCH"
          printf '\\033[1;31m%s\\033[0m <b>bold?</b>\\n' '{SHORT}'
          printf '\\033]8;;{SCRIPT_URL}\\033\\\\a terminal hyperlink\\033]8;;\\033\\\\\\n'
          echo '{SHORT} on stderr' >&2
          touch '{ARTIFACT}'
          sleep 2
          echo "the end of the output"
"""
# A plugin whose install fails: the job's error quotes pip's complaint, which quotes the requirement.
BROKEN_PIPELINE = f"""\
plugins:
  - {{name: broken, pip: {_q("./" + SHORT)}}}
stages:
  - name: never
    steps: ["true"]
"""


# -- people -----------------------------------------------------------------------------------------

class Person:
    """API calls as one person: a session cookie and its CSRF token, or a bearer token."""

    def __init__(self, queen: Cluster) -> None:
        self.api = queen.api
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.token = ""

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> tuple[int, Any]:
        sent = {"Content-Type": "application/json"}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        elif self.csrf:
            sent["X-CSRF-Token"] = self.csrf
        data = None if body is None else json.dumps(body)
        async with self.http.request(method, self.api + path, data=data, headers=sent) as resp:
            answer = await resp.json(content_type=None)
            if expect is not None:
                assert resp.status == expect, f"{method} {path}: {resp.status} {answer}"
            return resp.status, answer

    async def job(self, job_id: str) -> dict[str, Any]:
        return (await self.call("GET", f"/jobs/{job_id}", expect=200))[1]

    async def wait_final(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := await self.job(job_id))["status"] not in FINAL:
            assert time.monotonic() < deadline, f"job {job_id} did not end: {job}"
            await asyncio.sleep(0.1)
        return job


ADMIN = ("ada", "correct horse")
MEMBER = ("mallory", "mallory's long pw")


@contextlib.asynccontextmanager
async def people_of(queen: Cluster) -> AsyncIterator[tuple[Person, Person]]:
    """The first admin (signed in over the API) and a member calling with an API token."""
    admin, member = Person(queen), Person(queen)
    try:
        token = (queen.tmp / "queen" / "setup-token").read_text().strip()
        _, body = await admin.call("POST", "/setup", {"token": token, "username": ADMIN[0], "password": ADMIN[1]},
                                   expect=200)
        admin.csrf = body["csrf"]
        await admin.call("POST", "/users", {"username": MEMBER[0], "password": MEMBER[1], "role": "member"},
                         expect=201)
        _, body = await member.call("POST", "/session", {"username": MEMBER[0], "password": MEMBER[1]}, expect=200)
        member.csrf = body["csrf"]
        _, made = await member.call("POST", "/tokens", {"name": "scripts"}, expect=201)
        member.token = made["token"]
        yield admin, member
    finally:
        await admin.http.close()
        await member.http.close()


@pytest.fixture
async def staff(queen: Cluster) -> AsyncIterator[tuple[Person, Person]]:
    """A drone (it joins while the queen is still open: Cluster.add_drone reads /drones unsigned), then people."""
    await queen.add_drone("d1", capacity=4)
    async with people_of(queen) as both:
        yield both


# -- what the browser must never do ---------------------------------------------------------------

# Every element and attribute a payload could make, and every address a link or source may not have.
AUDIT = """() => {
  const bad = [];
  const own = (e) => e.outerHTML.slice(0, 160);
  for (const e of document.querySelectorAll("*")) {
    const tag = e.tagName.toLowerCase();
    for (const a of e.attributes) {
      const name = a.name.toLowerCase();
      if (name.startsWith("on")) bad.push("handler: " + own(e));
      if (["href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcdoc", "background",
           "srcset", "ping"].includes(name)) {
        const v = a.value.replace(/[\\u0000-\\u0020\\u007f-\\u00a0]/g, "").toLowerCase();
        if (/^(javascript|data|vbscript):/.test(v)) bad.push("address: " + own(e));
      }
    }
    const src = e.getAttribute("src") || "";
    // the dashboard's own scripts (apiary.js, and a part's own: partial.js, tests.js), nothing else
    if (tag === "script" && !/^\\/static\\/[a-z]+\\.js\\?/.test(src)) bad.push("script: " + own(e));
    if (["iframe", "frame", "object", "embed", "base", "svg", "math"].includes(tag)) bad.push("element: " + own(e));
    if (tag === "form" && new URL(e.action, location.href).origin !== location.origin) bad.push("form: " + own(e));
    if (tag === "img" && !/^\\/(badge|static)\\//.test(src)) bad.push("image: " + own(e));
    if (tag === "meta" && e.httpEquiv) bad.push("meta: " + own(e));
    if (tag === "a" && e.href && !/^https?:$/.test(new URL(e.href).protocol)) bad.push("link: " + own(e));
  }
  if (window.__pwned !== undefined) bad.push("window.__pwned = " + String(window.__pwned));
  return bad;
}"""


class Guard:
    """Watches a browser context: dialogs, script errors and CSP violations on any of its pages."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.events: list[str] = []
        self.left: list[str] = []  # requests for other sites, answered here (never sent)
        context.on("page", self.watch)
        for p in context.pages:
            self.watch(p)

    def watch(self, p: Page) -> None:
        p.on("dialog", self._dialog)
        p.on("pageerror", lambda error: self.events.append(f"script error: {error}"))
        p.on("console", lambda msg: self.events.append(f"CSP: {msg.text}") if csp_violation(msg) else None)

    async def _dialog(self, dialog: Dialog) -> None:
        self.events.append(f"a {dialog.type} dialog opened: {dialog.message!r}")
        await dialog.dismiss()

    async def route(self, context: BrowserContext) -> None:
        async def elsewhere(route: Any) -> None:
            self.left.append(route.request.url)
            await route.fulfill(status=200, content_type="text/html", body="<title>elsewhere</title>elsewhere")

        await context.route(lambda url: not url.startswith(self.origin), elsewhere)

    async def check(self, p: Page, where: str) -> None:
        found = await p.evaluate(AUDIT)
        assert not found, f"{where}: what a payload made is in the page: {found}"
        assert not self.events, f"{where}: {self.events}"


# -- a member's jobs, a forge's push, a drone's word -------------------------------------------------

async def trigger(member: Person, repo: str, **body: Any) -> str:
    return (await member.call("POST", f"/repos/{repo}/jobs", body, expect=201))[1]["id"]


async def github_push(queen: Cluster, repo: str, secret: str, payload: dict[str, Any]) -> tuple[int, str]:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert queen.http is not None
    async with queen.http.post(f"{base_url(queen)}/hooks/github/{repo}", data=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": signature}) as resp:
        return resp.status, await resp.text()


@contextlib.asynccontextmanager
async def drone_saying(queen: Cluster, **info: Any) -> AsyncIterator[str]:
    """A drone (a bare socket on the drone port) whose drone:info says `info`, kept alive by heartbeats."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"chatty")
    sock.connect(queen.endpoint)

    async def beat() -> None:
        while True:
            await sock.send(msgpack.packb(["drone:heartbeat", {"jobs": []}]))
            with contextlib.suppress(zmq.Again):
                while True:
                    await sock.recv(zmq.NOBLOCK)
            await asyncio.sleep(0.2)

    await sock.send(msgpack.packb(["drone:info", {"id": "chatty", "capacity": 1, "speed": 1.0,
                                                  "version": PROTOCOL_VERSION, "jobs": [], **info}]))
    task = asyncio.create_task(beat())
    try:
        yield "chatty"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(zmq.ZMQError):
            await sock.send(msgpack.packb(["drone:bye", {}]))
        sock.close()
        ctx.term()


# -- the admin's browser -------------------------------------------------------------------------------

async def sign_in(p: Page, user: str, password: str) -> None:
    await p.get_by_label("Username").fill(user)
    await p.get_by_label("Password").fill(password)
    await p.get_by_role("button", name="Sign in").click()


class Tour:
    """Opens pages and clicks each link that stays on the queen, once, checking after each."""

    def __init__(self, tab: Page, guard: Guard) -> None:
        self.page = tab
        self.guard = guard
        self.clicked: set[str] = set()
        self.pages = 0

    def here(self) -> str:
        url = urlsplit(self.page.url)
        return url.path + (f"?{url.query}" if url.query else "") + (f"#{url.fragment}" if url.fragment else "")

    async def links(self) -> list[tuple[str, str]]:
        """(href as written, as resolved) of every link in the page."""
        return await self.page.eval_on_selector_all("a[href]", "as => as.map(a => [a.getAttribute('href'), a.href])")

    async def open(self, path: str, ready: Any = None) -> None:
        await self.page.goto(path)
        if ready is not None:
            await ready()
        await self.guard.check(self.page, path)
        self.pages += 1

    async def click_all(self, path: str) -> None:
        """Click every link of the page at `path` that stays on the queen, each href once over the tour."""
        origin = self.guard.origin
        for written, resolved in await self.links():
            raw = written.strip().lower()
            assert not raw.startswith(("javascript:", "data:", "vbscript:")), f"{path}: a link to {written!r}"
            if not resolved.startswith(origin + "/") or written in self.clicked:
                continue
            self.clicked.add(written)
            if self.here() != path:
                await self.page.goto(path)
            await self._click(path, written)

    async def _click(self, path: str, href: str) -> None:
        p = self.page
        link = p.locator(f"a[href={json.dumps(href, ensure_ascii=False)}]").first
        where = f"{path}, after clicking {href!r}"
        if await link.get_attribute("download") is not None:
            async with p.expect_download() as download:
                await self._press(link)
            await (await download.value).cancel()
        elif await link.get_attribute("target") == "_blank":
            async with p.context.expect_page() as opened:
                await self._press(link)
            other = await opened.value
            await other.wait_for_load_state()
            await self.guard.check(other, where)
            await other.close()
        else:
            await self._press(link)
            await p.wait_for_load_state()
        await self.guard.check(p, where)

    @staticmethod
    async def _press(link: Any) -> None:
        await link.focus()  # the skip link shows when focused
        if await link.is_visible():
            await link.click()
        else:  # a link in a closed section: the same activation
            await link.evaluate("a => a.click()")


# -- the tests -----------------------------------------------------------------------------------------

async def test_no_value_a_member_forge_or_drone_sets_runs_script_in_the_admins_pages(
        queen: Cluster, staff: tuple[Person, Person], page: Page) -> None:
    started = time.monotonic()
    admin, member = staff
    origin = base_url(queen)
    guard = Guard(page.context, origin)
    await guard.route(page.context)

    await admin.call("POST", "/repos", {"name": "xss", "pipeline": PIPELINE, "plugins": [
        {"name": "github", "config": {"context": f"</textarea>{PAYLOAD}"}}]}, expect=201)
    await admin.call("PUT", "/repos/xss/secrets/WEBHOOK_SECRET", {"value": "hook secret"}, expect=200)
    await admin.call("POST", "/repos", {"name": "broken", "pipeline": BROKEN_PIPELINE}, expect=201)

    # The admin signs in and watches the dashboard, whose rows come in as HTML fetched again.
    watching = asyncio.Event()
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda frame: watching.set() if '"subscribed"' in str(frame) else None))
    await page.goto("/")
    await sign_in(page, *ADMIN)
    await expect(page.locator(".who")).to_contain_text(f"{ADMIN[0]} (admin)")
    await asyncio.wait_for(watching.wait(), 15)  # subscribed to new jobs

    # A member's job: every field it may set is HTML.
    one = await trigger(member, "xss", branch=REF_PAYLOAD, parameters={"GREETING": PAYLOAD},
                        trigger={"author": {"name": PAYLOAD, "email": SCRIPT_URL}, "message": PAYLOAD,
                                 "url": QUOTED_URL, "type": PAYLOAD})
    # A link that would run script or show a page of the member's making is refused, on the trigger and the re-run.
    for url in REFUSED_URLS:
        status, body = await member.call("POST", "/repos/xss/jobs", {"trigger": {"url": url}})
        assert (status, body.get("field")) == (400, "trigger.url"), (url, status, body)
        status, body = await member.call("POST", f"/jobs/{one}/rerun", {"trigger": {"url": url}})
        assert (status, body.get("field")) == (400, "trigger.url"), (url, status, body)
    two = await trigger(member, "xss", fetch=REF_PAYLOAD, trigger={
        "author": SCRIPT_URL, "message": SCRIPT_URL, "source": {"type": "API"}})
    broken = await trigger(member, "broken", trigger={"author": {"login": PAYLOAD}})
    # A forge's push: its branch, author and message are HTML, its link a script, which is dropped.
    status, text = await github_push(queen, "xss", "hook secret", {
        "ref": f"refs/heads/{REF_PAYLOAD}", "after": "0" * 40,
        "head_commit": {"message": PAYLOAD, "url": SCRIPT_URL, "author": {"name": PAYLOAD, "username": PAYLOAD}}})
    assert status == 201, text
    forged = json.loads(text)["jobs"][0]["id"]
    assert (await admin.job(forged))["trigger"]["url"] == ""
    jobs = [one, two, broken, forged]

    for job_id in jobs:
        await expect(page.locator(f"tr[data-job='{job_id}']")).to_have_count(1)
    await expect(page.locator("#jobs")).to_contain_text(PAYLOAD)  # shown, as text
    await guard.check(page, "the dashboard with the new rows")

    # The job page while the job runs: the log arrives over the WebSocket, the summary as HTML again.
    await page.goto(f"/jobs/{one}")
    step = page.locator(".cmd").filter(has=page.locator("summary .title", has_text=PAYLOAD[:80]))
    await expect(step).to_have_count(1, timeout=30_000)
    live = await step.evaluate("d => d.open")  # a running command is open; one that ended before, closed
    await step.evaluate("d => { d.open = true; }")
    await expect(step.locator(".log")).to_contain_text("branch " + REF_PAYLOAD, timeout=30_000)
    await expect(step.locator(".log")).to_contain_text("the end of the output", timeout=30_000)
    summary = page.locator("#summary")
    await expect(summary.locator(".facts")).to_have_attribute("data-final", "true", timeout=30_000)
    await expect(summary.locator(".artifacts")).to_contain_text(ARTIFACT)
    await expect(summary.locator(".plugin-figures")).to_contain_text(SHORT)
    for text in (PAYLOAD, QUOTED_URL, f"GREETING={PAYLOAD}"):
        await expect(summary).to_contain_text(text)
    log = step.locator(".log")
    for text in (PAYLOAD, SHORT + " <b>bold?</b>", "a terminal hyperlink", SHORT + " on stderr"):
        await expect(log).to_contain_text(text)
    await expect(log.locator(".c31.b")).to_have_text(SHORT)  # ANSI red: a span of text
    await expect(step.locator("summary .title")).to_have_text(PAYLOAD[:80])
    await expect(summary.get_by_role("link", name=QUOTED_URL)).to_have_attribute("href", QUOTED_URL)
    await guard.check(page, f"/jobs/{one}, live" if live else f"/jobs/{one}")
    print(f"the job page opened while the step ran: {live}")
    await shot(page, "no-script-job")

    for job_id in jobs:
        await admin.wait_final(job_id)
    failed = await admin.job(broken)
    assert failed["status"] == "errored" and SHORT in failed["error"], failed

    # The admin's own settings, also text wherever they are shown.
    _, repo = await admin.call("GET", "/repos/xss", expect=200)
    await admin.call("PUT", "/repos/xss", {
        "pipeline": repo["pipeline"], "plugins": repo["plugins"],
        "url": f"{SCRIPT_URL}//{PAYLOAD}", "provider": PAYLOAD, "default_branch": PAYLOAD,
        "auth": {"type": "https", "secret": "WEBHOOK_SECRET", "username": PAYLOAD},
        "branches": {"include": [PAYLOAD], "exclude": [SCRIPT_URL]}}, expect=200)

    tour = Tour(page, guard)

    async def all_output_shown() -> None:
        """Every section of the job page open, so that every line of output is drawn."""
        await expect(page.locator(".log .ln").first).to_be_attached()  # the events came over the WebSocket
        await page.wait_for_function("""() => {
          for (const d of document.querySelectorAll("details")) d.open = true;
          return Array.from(document.querySelectorAll(".log")).every((log) => log.querySelector(".ln"));
        }""")

    async def job_one() -> None:
        await all_output_shown()
        await expect(summary).to_contain_text(f"({PAYLOAD})")  # the trigger's type
        await expect(page.locator(".joblog .log")).to_contain_text(SHORT)  # the plugin's figures, as a line

    async def job_two() -> None:
        await all_output_shown()
        await expect(summary.locator("code").first).to_have_text(REF_PAYLOAD)  # the fetched ref
        # Who triggered it is the token's owner as the queen knows it; the client's own words stay text.
        await expect(summary.locator("#job-trigger")).to_contain_text("(API token)")
        await expect(summary).to_contain_text(SCRIPT_URL)

    async def forged_job() -> None:
        await all_output_shown()
        await expect(summary.locator("a[rel~=noopener]")).to_have_count(0)  # its script link was dropped
        await expect(summary).to_contain_text(PAYLOAD)

    async def broken_job() -> None:
        await all_output_shown()
        await expect(summary.locator(".attempts li").first).to_contain_text(f"Invalid requirement: './{SHORT}'")
        await expect(summary.locator(".facts dd").first).to_contain_text(f"Invalid requirement: './{SHORT}'")

    async def settings() -> None:
        await expect(page.locator("#r-url")).to_have_value(f"{SCRIPT_URL}//{PAYLOAD}")
        await expect(page.locator("#r-provider")).to_have_value(PAYLOAD)
        await expect(page.locator("#r-user")).to_have_value(PAYLOAD)
        await expect(page.locator("#r-pipeline")).to_have_value(PIPELINE)  # </textarea> in it ended nothing
        plugins_text = re.compile(re.escape(f"context: </textarea>{PAYLOAD[:30]}"))
        await expect(page.locator("#r-plugins")).to_have_value(plugins_text)

    # The drones page as a drone that says its host and plugins are HTML joins: its part comes in as HTML.
    await tour.open("/drones", lambda: expect(page.locator("#drone-d1")).to_be_visible())
    async with drone_saying(queen, host=PAYLOAD, plugins=[PAYLOAD, SCRIPT_URL]) as chatty:
        row = page.locator(f"#drone-{chatty}")
        await expect(row).to_contain_text(PAYLOAD)
        await expect(row).to_contain_text(SCRIPT_URL)
        await guard.check(page, "/drones, with the drone that joined")
        await tour.click_all("/drones")

    for path, ready in [
        ("/", lambda: expect(page.locator("#jobs")).to_contain_text(PAYLOAD)),
        ("/repos/xss", lambda: expect(page.locator("#t-branch")).to_have_value(PAYLOAD)),  # the default branch
        (f"/repos/xss?branch={quote(PAYLOAD, safe='')}",  # from the address bar, shown back
         lambda: expect(page.locator("#history-h")).to_contain_text(PAYLOAD)),
        ("/repos/xss/settings", settings),
        (f"/jobs/{one}", job_one),
        (f"/jobs/{two}", job_two),
        (f"/jobs/{forged}", forged_job),
        (f"/jobs/{broken}", broken_job),
        (f"/jobs/{quote(SHORT, safe='')}", lambda: expect(page.locator("main")).to_contain_text(f"no job '{SHORT}'")),
        (f"/repos/{quote(SHORT, safe='')}", lambda: expect(page.locator("main")).to_contain_text(SHORT)),
    ]:
        await tour.open(path, ready)
        await tour.click_all(path)
    assert not guard.left, f"a link led off the queen: {guard.left}"
    print(f"{tour.pages} pages opened and {len(tour.clicked)} links clicked in {time.monotonic() - started:.1f} s")


# -- where signing in leads ----------------------------------------------------------------------------

async def signed_in_from(chromium: Browser, queen: Cluster, next_: str) -> tuple[str, Guard]:
    """Sign the admin in on /signin?next=`next_` in a fresh browser context; where the browser ends up."""
    origin = base_url(queen)
    context = await chromium.new_context(base_url=origin)
    context.set_default_timeout(15_000)
    try:
        guard = Guard(context, origin)
        await guard.route(context)
        p = await context.new_page()
        await p.goto("/signin?next=" + quote(next_, safe=""))
        await sign_in(p, *ADMIN)
        await p.wait_for_url(lambda url: urlsplit(url).path != "/signin")
        await p.wait_for_load_state()
        if p.url.startswith(origin + "/"):
            await expect(p.locator(".who")).to_contain_text(f"{ADMIN[0]} (admin)")
            await guard.check(p, f"signed in from ?next={next_}")
        return p.url, guard
    finally:
        await context.close()


async def test_signing_in_leads_back_only_to_a_page_of_this_queen(queen: Cluster, browser: Browser) -> None:
    origin = base_url(queen)
    async with people_of(queen):
        url, _ = await signed_in_from(browser, queen, "/repos/new?x=1#y")
        assert url == origin + "/repos/new?x=1#y"  # where the visitor was going
        # Spelt so that a browser would resolve it to another site, or run it: the dashboard instead.
        # One of each kind of spelling: a backslash, encoded slashes, a script, a dot segment.
        for next_ in ("/\\evil.example/", "%2F%2Fevil.example", SCRIPT_URL, "/.//evil.example/"):
            url, guard = await signed_in_from(browser, queen, next_)
            assert url.startswith(origin + "/"), f"?next={next_} led to {url}"
            assert not guard.left, f"?next={next_} asked for {guard.left}"
