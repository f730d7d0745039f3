"""People sign in: the first admin, roles, sessions with CSRF, API tokens, anonymous reading."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import base_url, browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster

_open: list[Caller] = []


@pytest.fixture(autouse=True)
async def _close_callers() -> Any:
    yield
    while _open:
        await _open.pop().close()


class Caller:
    """Requests as one person: a bearer token, or a session cookie and its CSRF token (closed after the test)."""

    def __init__(self, queen: Cluster, token: str = "") -> None:
        _open.append(self)
        self.base = queen.api
        self.token = token
        self.csrf = ""
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def call(self, method: str, path: str, body: Any = None, csrf: bool = True) -> tuple[int, Any]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.csrf and csrf:
            headers["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def close(self) -> None:
        if not self.http.closed:
            await self.http.close()


async def first_admin(queen: Cluster) -> Caller:
    token = (queen.tmp / "queen" / "setup-token").read_text().strip()
    admin = Caller(queen)
    status, body = await admin.call("POST", "/setup", {"token": token, "username": "ada", "password": "correct horse"})
    assert status == 200, body
    admin.csrf = body["csrf"]
    return admin


async def test_first_admin_then_nothing_without_signing_in(queen: Cluster) -> None:
    # Before any user: a loopback queen is open, and says how to make the first admin.
    assert (await queen.request("GET", "/jobs"))[0] == 200
    assert "apiary user add" in queen.queen.logs() if queen.queen else False
    wrong = Caller(queen)
    status, body = await wrong.call("POST", "/setup", {"token": "guess", "username": "eve", "password": "12345678"})
    assert (status, body["field"]) == (400, "token")
    admin = await first_admin(queen)
    try:
        assert not (queen.tmp / "queen" / "setup-token").exists()  # used up
        status, _ = await queen.request("GET", "/jobs")
        assert status == 401
        status, body = await Caller(queen, token="apiary_nope_nope").call("GET", "/jobs")
        assert status == 401 and "sign in" in body["error"]
        assert (await admin.call("GET", "/me"))[1] == {"user": "ada", "role": "admin", "via": "session"}
        status, _ = await admin.call("POST", "/setup", {"token": "x", "username": "eve", "password": "12345678"})
        assert status == 409
    finally:
        await admin.close()


async def test_roles_tokens_and_csrf(queen: Cluster) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)
    try:
        # A session cookie alone does not change anything: the CSRF token must come too.
        status, body = await admin.call("POST", "/repos", {"name": "app", "pipeline": "stages: [{name: s, steps: [\"true\"]}]"},
                                        csrf=False)
        assert status == 403 and "X-CSRF-Token" in body["error"]
        assert (await admin.call("POST", "/repos", {"name": "app", "pipeline": "stages: [{name: s, steps: [\"true\"]}]"}))[0] == 201
        status, body = await admin.call("POST", "/users", {"username": "bob", "password": "short"})
        assert (status, body["field"]) == (400, "password")
        assert (await admin.call("POST", "/users", {"username": "bob", "password": "bob's long pw",
                                                     "role": "member"}))[0] == 201

        bob = Caller(queen)
        status, body = await bob.call("POST", "/session", {"username": "bob", "password": "wrong one"})
        assert status == 401
        status, body = await bob.call("POST", "/session", {"username": "bob", "password": "bob's long pw"})
        assert status == 200 and body["role"] == "member"
        bob.csrf = body["csrf"]
        status, made = await bob.call("POST", "/tokens", {"name": "laptop"})
        assert status == 201 and made["token"].startswith("apiary_")
        await bob.close()

        # A name is the same person's whatever its case or form (as for uniqueness): Erin signs in as "erin",
        # is shown as "Erin", asks a token for "ERIN"; an admin deletes "erin".
        assert (await admin.call("POST", "/users", {"username": "Erin", "password": "erin's long pw"}))[0] == 201
        erin = Caller(queen)
        try:
            status, body = await erin.call("POST", "/session", {"username": "ｅrin", "password": "erin's long pw"})
            assert status == 200 and body["user"] == "Erin", body
            erin.csrf = body["csrf"]
            assert (await erin.call("POST", "/tokens", {"name": "t", "user": "ERIN"}))[0] == 201
        finally:
            await erin.close()
        status, body = await admin.call("DELETE", "/users/erin")
        assert status == 200 and body["name"] == "Erin", body

        # The token works without cookies or CSRF (the CLI's way), as a member.
        cli = Caller(queen, token=made["token"])
        try:
            job = await cli.call("POST", "/repos/app/jobs", {})
            assert job[0] == 201
            assert (await queen.wait_for(lambda: cli.call("GET", f"/jobs/{job[1]['id']}"),
                                         lambda r: r[1]["status"] == "passed", "the job"))[0] == 200
            assert (await cli.call("PUT", "/repos/app/secrets/TOKEN", {"value": "x"}))[0] == 403
            assert (await cli.call("GET", "/users"))[0] == 403
            assert (await cli.call("DELETE", f"/tokens/{made['id']}"))[0] == 200
            assert (await cli.call("GET", "/jobs"))[0] == 401  # revoked at once
        finally:
            await cli.close()
    finally:
        await admin.close()

    # Passwords are stored as argon2id hashes, tokens as SHA-256 of their secret part.
    assert queen.queen is not None
    with queen.raw_store() as raw:
        assert raw.users.find_one({"_id": "bob"})["password"].startswith("$argon2id$")


async def test_anonymous_reading_is_off_unless_enabled(cluster: Cluster) -> None:
    await cluster.start_queen(env={"APIARY_QUEEN_ANONYMOUS_READ": "true"})
    admin = await first_admin(cluster)
    try:
        assert (await admin.call("POST", "/repos", {"name": "app", "pipeline": "stages: [{name: s, steps: [\"true\"]}]"}))[0] == 201
    finally:
        await admin.close()
    assert (await cluster.request("GET", "/jobs"))[0] == 200
    assert (await cluster.request("GET", "/repos/app"))[0] == 200
    assert (await cluster.request("POST", "/repos/app/jobs", {}))[0] == 401


async def test_sign_in_on_the_page_then_the_trigger_button_works_and_sign_out(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)
    await admin.call("POST", "/repos", {"name": "app", "pipeline": "stages: [{name: s, steps: [\"echo hi\"]}]"})
    await admin.call("POST", "/users", {"username": "bob", "password": "bob's long pw", "role": "member"})

    await page.goto("/repos/app")
    await page.wait_for_url(re.compile(r"/signin\?next=/repos/app$"))
    await page.get_by_label("Username").fill("bob")
    await page.get_by_label("Password").fill("not it at all")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#err-password")).to_contain_text("wrong username or password")
    await page.get_by_label("Password").fill("bob's long pw")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/repos/app")
    await expect(page.locator(".who")).to_contain_text("bob (member)")
    await shot(page, "signed-in")

    # The page's script sends the session's CSRF token: the button works.
    await page.get_by_role("button", name="Trigger a job").click()
    await page.wait_for_url(re.compile(r"/jobs/\w+$"))
    await expect(page.locator("#job-status")).to_have_text("passed", timeout=20_000)

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/signin")
    await page.goto("/")
    await page.wait_for_url("**/signin?next=/")


async def test_a_queen_on_a_public_address_without_users_answers_only_its_setup(cluster: Cluster,
                                                                              browser: Browser) -> None:
    await cluster.start_queen(env={"APIARY_QUEEN_HTTP_HOST": "0.0.0.0"})
    status, body = await cluster.request("GET", "/jobs")
    assert status == 401 and "apiary user add" in body["error"]
    context = await browser.new_context(base_url=base_url(cluster))
    page = await context.new_page()
    await page.goto("/")
    await page.wait_for_url("**/setup")
    token = (cluster.tmp / "queen" / "setup-token").read_text().strip()
    await page.get_by_label("Setup token").fill(token)
    await page.get_by_label("Username").fill("ada")
    await page.get_by_label("Password").fill("correct horse")
    await page.get_by_role("button", name="Make the admin and sign in").click()
    await page.wait_for_url(re.compile(r"/$"))
    await expect(page.locator(".who")).to_contain_text("ada (admin)")
    await context.close()


async def test_the_first_admin_and_a_cli_token_from_the_command_line(queen: Cluster) -> None:
    import asyncio
    import os
    import sys

    base = queen.api.rsplit("/api", 1)[0]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APIARY_")},
           "APIARY_QUEEN_DATA_DIR": str(queen.tmp / "queen"), "APIARY_CLIENT_URL": base}

    async def apiary(*args: str, stdin: str = "", extra: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "apiary.cli", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**env, **(extra or {})})
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
        return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = await apiary("user", "add", "ada", stdin="correct horse\n")
    assert code == 0, err
    assert "ada is an admin of this queen" in out
    code, _, err = await apiary("ls")
    assert code != 0 and "sign in first" in err
    code, out, err = await apiary("token", "create", "--user", "ada", stdin="correct horse\n")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("apiary_")
    code, out, err = await apiary("user", "add", "bob", "--role", "member", stdin="bob's long pw\n",
                                  extra={"APIARY_CLIENT_TOKEN": token})
    assert code == 0, err
    code, out, err = await apiary("ls", extra={"APIARY_CLIENT_TOKEN": token})
    assert code == 0, err
    # With ada's token set (as the README's People block has it), a token for bob is bob's, not ada's.
    code, out, err = await apiary("token", "create", "--user", "bob", stdin="bob's long pw\n",
                                  extra={"APIARY_CLIENT_TOKEN": token})
    assert code == 0, err
    admin = Caller(queen, token)
    status, me = await Caller(queen, out.strip()).call("GET", "/me")
    assert (status, me["user"], me["role"]) == (200, "bob", "member")
    code, _, err = await apiary("token", "create", "--user", "bob", stdin="wrong password\n",
                                extra={"APIARY_CLIENT_TOKEN": token})
    assert code != 0 and "wrong username or password" in err
    # The API too: a request signed in as ada that names bob makes nobody a token.
    status, body = await admin.call("POST", "/tokens", {"name": "x", "user": "bob"})
    assert (status, body["field"]) == (403, "user") and "signed in as 'ada'" in body["error"]
    assert [t["name"] for t in (await admin.call("GET", "/tokens"))[1]["tokens"]] == ["cli"]
    code, _, err = await apiary("token", "create", "--user", "ada", stdin="wrong password\n")
    assert code != 0 and "wrong username or password" in err and "Traceback" not in err


async def _apiary(queen: Cluster, *args: str, stdin: str = "", env: dict[str, str] | None = None
                  ) -> tuple[int, str, str]:
    """An apiary client command against `queen`, as a user would type it (no APIARY_ settings but the URL)."""
    import asyncio
    import os
    import sys

    base = {**{k: v for k, v in os.environ.items() if not k.startswith("APIARY_")},
            "APIARY_CLIENT_URL": queen.api.rsplit("/api", 1)[0], "HOME": str(queen.tmp / "home")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**base, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_until_an_admin_exists_only_the_owners_setup_token_makes_users(queen: Cluster) -> None:
    data_dir = str(queen.tmp / "queen")
    # Anyone who reaches a fresh queen: no admin, no member, whatever role is asked.
    for role in ("admin", "member"):
        status, body = await queen.request("POST", "/users", {"username": "eve", "password": "12345678",
                                                               "role": role})
        assert status == 403 and "setup token" in body["error"], body
    # The owner's command without the data dir: it says what it needs, and makes nobody.
    code, out, err = await _apiary(queen, "user", "add", "ada", stdin="correct horse\n")
    assert code == 1 and "has no admin yet" in err and "--data-dir" in err and "Traceback" not in err
    # Never a member in place of the first admin.
    code, _, err = await _apiary(queen, "user", "add", "ada", "--role", "member", "--data-dir", data_dir,
                                 stdin="correct horse\n")
    assert code == 1 and "leave out --role member" in err
    assert (await queen.get("/me")) == {"user": None, "setup": True}
    # The token goes to the queen whose data dir it came from, whatever [client] url says.
    code, out, err = await _apiary(queen, "user", "add", "ada", "--data-dir", data_dir, stdin="correct horse\n",
                                   env={"APIARY_CLIENT_URL": "http://127.0.0.1:9"})
    assert code == 0 and "ada is an admin of this queen" in out, err
    assert not (queen.tmp / "queen" / "setup-token").exists()
    # Now the queen wants signing in, and only an admin adds people.
    assert (await queen.request("POST", "/users", {"username": "eve", "password": "12345678"}))[0] == 401


async def test_a_queen_left_without_an_admin_gets_one_from_its_machine(queen: Cluster) -> None:
    """A queen whose only user is a member (left so by an older version) is given an admin with the setup token."""
    assert queen.queen is not None
    member = await first_admin(queen)
    await member.close()
    with queen.raw_store() as raw:
        raw.users.update_one({"_id": "ada"}, {"$set": {"role": "member"}})
    await queen.queen.stop()
    await queen.start_queen()
    await queen.queen.wait_output(r"API:")
    assert "has users but no admin" in queen.queen.stderr.read_text()
    token_file = queen.tmp / "queen" / "setup-token"
    assert token_file.exists()
    code, out, err = await _apiary(queen, "user", "add", "root", "--role", "admin", "--data-dir",
                                   str(queen.tmp / "queen"), stdin="root's long pw\n")
    assert code == 0 and "root is an admin of this queen" in out, err
    signed_in = Caller(queen)
    status, body = await signed_in.call("POST", "/session", {"username": "root", "password": "root's long pw"})
    assert (status, body["role"]) == (200, "admin")
    signed_in.csrf = body["csrf"]
    users = {u["name"]: u["role"] for u in (await signed_in.call("GET", "/users"))[1]["users"]}
    assert users == {"ada": "member", "root": "admin"}
    assert not token_file.exists()
