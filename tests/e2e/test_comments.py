"""Comments on jobs with a real queen and store: the API for two people and an admin, the limits, the CLI,
and the job page following another person's comment live (apiary.queen.comments)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import ulid
from playwright.async_api import Page, expect

from apiary.queen.comment_rules import MAX_PER_JOB, MAX_TEXT, RATE_LIMIT
from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_approvals import _cli
from tests.e2e.test_client import url
from tests.e2e.test_users import Caller, _close_callers, first_admin  # noqa: F401  (fixture)

PIPELINE = 'stages: [{name: s, steps: ["true"]}]'


async def _people(queen: Cluster) -> tuple[Caller, Caller, Caller]:
    """ada (admin), bob and cy (members), each signed in with a session and its CSRF token."""
    admin = await first_admin(queen)
    members = []
    for name in ("bob", "cy"):
        assert (await admin.call("POST", "/users", {"username": name, "password": f"{name}'s long pw",
                                                     "role": "member"}))[0] == 201
        person = Caller(queen)
        status, body = await person.call("POST", "/session", {"username": name, "password": f"{name}'s long pw"})
        assert status == 200
        person.csrf = body["csrf"]
        members.append(person)
    return admin, members[0], members[1]


async def _job(caller: Caller, repo: str) -> dict:
    """A job, left queued (no drone): comments need only the job."""
    assert (await caller.call("POST", "/repos", {"name": repo, "pipeline": PIPELINE, "pipeline_source": "queen"}))[0] == 201
    status, job = await caller.call("POST", f"/repos/{repo}/jobs", {})
    assert status == 201
    return job


async def test_two_people_comment_edit_and_delete_their_own_and_an_admin_deletes_any(queen: Cluster) -> None:
    admin, bob, cy = await _people(queen)
    job = await _job(admin, "app")
    path = f"/jobs/{job['id']}/comments"
    ws = await bob.http.ws_connect(queen.api.replace("http://", "ws://").replace("/api/v1", "/ws"))  # his session
    try:
        await ws.send_json({"op": "subscribe", "topic": "job", "job": job["id"]})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"

        status, said = await bob.call("POST", path, {"text": "**flaky**: <script>alert(1)</script> [log](javascript:x)"})
        assert status == 201, said
        assert said["author"] == "bob" and said["edited"] is None
        assert said["html"] == ("<p><strong>flaky</strong>: &lt;script&gt;alert(1)&lt;/script&gt; "
                                "[log](javascript:x)</p>\n")
        live = await ws.receive_json(timeout=10)
        assert live == {"type": "job:comment", "job": job["id"], "action": "added", "id": said["id"], "comment": said}
        status, other = await cy.call("POST", path, {"text": "agreed, see https://example.com"})
        assert status == 201

        # Each edits their own only; the edit is marked.
        status, body = await cy.call("PATCH", f"{path}/{said['id']}", {"text": "not mine"})
        assert (status, body["field"]) == (403, "comment") and "only its author (bob)" in body["error"]
        status, body = await admin.call("PATCH", f"{path}/{said['id']}", {"text": "an admin's words"})
        assert status == 403
        status, edited = await bob.call("PATCH", f"{path}/{said['id']}", {"text": "flaky, **twice**"})
        assert status == 200 and edited["edited"] >= edited["created"] and edited["html"] == "<p>flaky, <strong>twice</strong></p>\n"
        assert (await ws.receive_json(timeout=10))["action"] == "added"  # cy's
        assert (await ws.receive_json(timeout=10))["action"] == "edited"

        # Each deletes their own; an admin deletes anyone's.
        assert (await cy.call("DELETE", f"{path}/{said['id']}"))[0] == 403
        assert (await bob.call("DELETE", f"{path}/{other['id']}"))[0] == 403
        status, body = await admin.call("DELETE", f"{path}/{other['id']}")
        assert status == 200 and body == {"id": other["id"], "deleted": True}
        assert (await ws.receive_json(timeout=10)) == {"type": "job:comment", "job": job["id"], "action": "deleted",
                                                       "id": other["id"]}
        status, listed = await cy.call("GET", path)
        assert status == 200 and [c["id"] for c in listed["comments"]] == [said["id"]]
        assert listed["comments"][0]["text"] == "flaky, **twice**"
        assert (await bob.call("DELETE", f"{path}/{other['id']}"))[0] == 404
        assert (await bob.call("POST", "/jobs/nope/comments", {"text": "x"}))[0] == 404

        # A session's write needs its CSRF token, like every other change.
        status, body = await bob.call("POST", path, {"text": "x"}, csrf=False)
        assert status == 403 and "X-CSRF-Token" in body["error"]
        # Bad input names its field.
        for given, says in (({}, "text: required"), ({"text": ""}, "text: empty"),
                            ({"text": "x" * (MAX_TEXT + 1)}, "at most 10,000"), ({"text": "a\x00"}, "U+0000"),
                            ({"text": "x", "by": "ada"}, "by")):
            status, body = await bob.call("POST", path, given)
            assert status == 400 and says in body["error"], (given, body)
        # A key given twice: which would count is a guess, so neither does.
        async with bob.http.post(queen.api + path, data='{"text": "a", "text": "b"}',
                                 headers={"Content-Type": "application/json", "X-CSRF-Token": bob.csrf}) as resp:
            assert resp.status == 400 and "the key 'text' twice" in (await resp.json())["error"]
    finally:
        await ws.close()

    # One person writes at most RATE_LIMIT comments or edits a minute.
    status, body = await cy.call("POST", path, {"text": "1"})
    for n in range(2, RATE_LIMIT + 2):
        status, body = await cy.call("POST", path, {"text": str(n)})
        if status != 201:
            break
    assert status == 429 and n == RATE_LIMIT and body["field"] == "text", (n, body)

    # At most MAX_PER_JOB on a job: the rest are stored as the queen stores them, then one more is refused.
    assert queen.queen is not None
    with queen.raw_store() as raw:
        have = raw.comments.count_documents({"job": job["id"]})
        raw.comments.insert_many([{"_id": str(ulid.ULID()), "job": job["id"], "author": "ada", "text": "x",
                                          "html": "<p>x</p>\n", "renderer": 1, "created": time.time(), "edited": None}
                                         for _ in range(MAX_PER_JOB - have)])
        raw.comment_counts.delete_one({"_id": job["id"]})  # counted again from the comments stored
        # Another job three short of the cap, and eight posts at once by two people: exactly three are taken.
        job3 = await _job(admin, "race")
        raw.comments.insert_many([{"_id": str(ulid.ULID()), "job": job3["id"], "author": "ada", "text": "x",
                                          "html": "<p>x</p>\n", "renderer": 1, "created": time.time(),
                                          "edited": None} for _ in range(MAX_PER_JOB - 3)])
    status, body = await admin.call("POST", path, {"text": "one too many"})
    assert status == 409 and "1,000 comments" in body["error"]
    answers = await asyncio.gather(*(person.call("POST", f"/jobs/{job3['id']}/comments", {"text": f"at once {n}"})
                                     for n in range(4) for person in (admin, bob)))
    assert sorted(status for status, _ in answers) == [201] * 3 + [409] * 5, answers
    # Read a page at a time: the newest 50 by default, at most 500, then those before the first.
    status, listed = await admin.call("GET", f"/jobs/{job3['id']}/comments")
    assert status == 200 and len(listed["comments"]) == 50 and listed["older"] is True
    assert listed["comments"][-1]["text"].startswith("at once")
    status, newest = await admin.call("GET", f"/jobs/{job3['id']}/comments?limit=500")
    status, oldest = await admin.call("GET", f"/jobs/{job3['id']}/comments?limit=500&before={newest['comments'][0]['id']}")
    assert (status, len(oldest["comments"]), oldest["older"]) == (200, 500, False)
    assert oldest["comments"][-1]["id"] < newest["comments"][0]["id"]
    for query, says in (("limit=501", "limit: must be between 1 and 500"), ("before=../x", "before: '../x' is not")):
        status, body = await admin.call("GET", f"/jobs/{job3['id']}/comments?{query}")
        assert status == 400 and says in body["error"], body
    # A comment deleted makes room for one.
    mine = next(said for status, said in answers if status == 201)
    assert (await admin.call("DELETE", f"/jobs/{job3['id']}/comments/{mine['id']}"))[0] == 200
    assert (await admin.call("POST", f"/jobs/{job3['id']}/comments", {"text": "room again"}))[0] == 201

    # From the command line, with a member's token: write, list, edit, delete.
    status, made = await bob.call("POST", "/tokens", {"name": "cli"})
    job2 = await _job(admin, "cli")
    said = await _cli(made["token"], "comment", f"cli#{job2['number']}", "from the *terminal*", *url(queen))
    assert said.code == 0 and "comment " in said.out, said
    cid = re.search(r"comment (\S+):", said.out)[1]  # type: ignore[index]
    listed = await _cli(made["token"], "comments", f"cli#{job2['number']}", *url(queen))
    assert listed.code == 0 and "bob · " in listed.out and "  from the *terminal*" in listed.out, listed
    said = await _cli(made["token"], "comment", job2["id"], "--edit", cid, "better", *url(queen))
    assert said.code == 0, said
    shown = json.loads((await _cli(made["token"], "comments", job2["id"], "--json", *url(queen))).out)
    assert [(c["text"], c["edited"] is not None) for c in shown] == [("better", True)]
    said = await _cli(made["token"], "comment", job2["id"], "", *url(queen))
    assert said.code == 2 and "text: empty" in said.err, said
    said = await _cli(made["token"], "comment", job2["id"], "--delete", cid, *url(queen))
    assert said.code == 0 and (await _cli(made["token"], "comments", job2["id"], *url(queen))).out.startswith("no comments")


async def test_a_name_taken_again_owns_nothing_names_are_one_whatever_their_case_and_big_tables_are_refused(
        queen: Cluster) -> None:
    admin, bob, _ = await _people(queen)
    job = await _job(admin, "app")
    path = f"/jobs/{job['id']}/comments"
    status, said = await bob.call("POST", path, {"text": "bob's words"})
    assert status == 201 and said["author"] == "bob" and said["author_id"]
    # Users and comments from before ids: each user gets one when the queen starts, and their comments too.
    assert queen.queen is not None
    with queen.raw_store() as raw:
        raw.users.update_many({}, {"$unset": {"uid": "", "key": ""}})
        raw.comments.update_many({}, {"$unset": {"author_id": ""}})
    await queen.queen.stop()
    await queen.start_queen()
    status, body = await bob.call("PATCH", f"{path}/{said['id']}", {"text": "bob's words"})
    assert status == 200 and body["author_id"], body
    status, body = await admin.call("POST", "/users", {"username": "Bob", "password": "long enough", "role": "member"})
    assert status == 409, body  # the name keys were made too
    said = (await bob.call("GET", path))[1]["comments"][0]  # now with its author_id
    # bob leaves; someone else is given his name: the comment stays the old bob's.
    assert (await admin.call("DELETE", "/users/bob"))[0] == 200
    assert (await admin.call("POST", "/users", {"username": "bob", "password": "new bob's pw", "role": "member"}))[0] == 201
    new_bob = Caller(queen)
    status, body = await new_bob.call("POST", "/session", {"username": "bob", "password": "new bob's pw"})
    new_bob.csrf = body["csrf"]
    status, body = await new_bob.call("PATCH", f"{path}/{said['id']}", {"text": "words in his mouth"})
    assert status == 403 and body["field"] == "comment", body
    assert (await new_bob.call("DELETE", f"{path}/{said['id']}"))[0] == 403
    status, mine = await new_bob.call("POST", path, {"text": "the new bob"})
    assert status == 201 and mine["author_id"] != said["author_id"]
    assert (await new_bob.call("PATCH", f"{path}/{mine['id']}", {"text": "edited"}))[0] == 200

    # A name differing only in case is the same name.
    for name in ("ADA", "Bob"):
        status, body = await admin.call("POST", "/users", {"username": name, "password": "long enough", "role": "admin"})
        assert status == 409 and body["field"] == "username" and "differing only in case" in body["error"], body

    # A table whose rendering would be large is refused, saying why; a small aligned one has no style attribute.
    wide = "|a" * 1000 + "|\n" + "|-" * 1000 + "|\n" + "x\n" * 2998
    status, body = await admin.call("POST", path, {"text": wide})
    assert status == 400 and body["field"] == "text" and "a table of 1000 columns; at most 32" in body["error"]
    status, body = await admin.call("PATCH", f"{path}/{said['id']}", {"text": "x"})
    assert status == 403  # an admin does not edit others' words, new rules or not
    status, small = await admin.call("POST", path, {"text": "|a|b|\n|-:|:-|\n|1|2|"})
    assert status == 201 and 'class="align-right"' in small["html"] and "style=" not in small["html"]


async def test_on_a_queen_without_users_its_owner_comments(queen: Cluster) -> None:
    await queen.create_pipeline_repo("solo", PIPELINE)
    job = await queen.trigger("solo")
    status, said = await queen.request("POST", f"/jobs/{job['id']}/comments", {"text": "note to self"})
    assert status == 201 and said["author"] == "the queen's owner"
    status, edited = await queen.request("PATCH", f"/jobs/{job['id']}/comments/{said['id']}", {"text": "fixed"})
    assert status == 200 and edited["edited"]
    assert (await queen.request("DELETE", f"/jobs/{job['id']}/comments/{said['id']}"))[0] == 200


async def test_a_comment_by_someone_else_appears_live_on_an_open_job_page_rendered(queen: Cluster, page: Page) -> None:
    admin, bob, _ = await _people(queen)
    job = await _job(admin, "live")
    await page.goto(f"/jobs/{job['id']}")
    await page.get_by_label("Username").fill("ada")
    await page.get_by_label("Password").fill("correct horse")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**/jobs/{job['id']}")
    await expect(page.locator("#comments-empty")).to_be_visible()
    await asyncio.sleep(0.5)  # the page's socket subscribed (nothing to wait on that the page shows)

    text = ("The **network** test timed out again: [the log](https://example.com/log?x=1)\n\n"
            "<script>document.title='owned'</script> <img src=x onerror=\"document.title='owned'\"> "
            "[click](javascript:document.title='owned') ![pixel](https://evil.example/p.png)\n\n"
            "```\nretry: 3\n```")
    status, said = await bob.call("POST", f"/jobs/{job['id']}/comments", {"text": text})
    assert status == 201
    item = page.locator(f'#comment-list li[data-comment="{said["id"]}"]')
    await expect(item).to_be_visible()
    await expect(item.locator(".comment-author")).to_have_text("bob")
    await expect(item.locator(".comment-body strong")).to_have_text("network")
    link = item.locator('.comment-body a[href="https://example.com/log?x=1"]')
    await expect(link).to_have_attribute("rel", "nofollow noopener noreferrer")
    await expect(item.locator(".comment-body")).to_contain_text("<script>document.title='owned'</script>")
    assert await item.locator(".comment-body script, .comment-body img, .comment-body [onerror]").count() == 0
    assert await item.locator('.comment-body a[href^="javascript"]').count() == 0
    assert await page.title() != "owned"
    await expect(item.locator(".comment-delete")).to_be_visible()  # ada is an admin: she may delete it ...
    assert await item.locator(".comment-edit").count() == 0  # ... not edit it
    await expect(page.locator("#comment-count")).to_have_text("1")

    # Ada writes one from the page; bob edits his: both show without a reload.
    await page.locator("#comment-text").fill("Looking into it. `ulimit -n` was *256*.")
    await page.locator("#comment-send").click()
    mine = page.locator('#comment-list li[data-author="ada"]')
    await expect(mine.locator(".comment-body code")).to_have_text("ulimit -n")
    await expect(mine.locator(".comment-edit")).to_be_visible()
    await expect(page.locator("#comment-text")).to_have_value("")
    assert (await bob.call("PATCH", f"/jobs/{job['id']}/comments/{said['id']}", {"text": text + "\n\nAlso on #7."}))[0] == 200
    await expect(item.locator(".comment-edited")).to_be_visible()
    await expect(item.locator(".comment-body")).to_contain_text("Also on #7.")
    await page.locator("#comments").screenshot(path="/tmp/shots/comments-live.png")
    await shot(page, "comments-live")

    # Ada edits hers on the page, then deletes bob's (a second click confirms).
    await mine.locator(".comment-edit").click()
    await mine.locator(".comment-editor textarea").fill("Fixed: `ulimit -n 4096`.")
    await mine.locator(".comment-editor textarea").press("Control+Enter")  # saves, as it sends a new one
    await expect(mine.locator(".comment-body")).to_contain_text("Fixed:")
    await expect(mine.locator(".comment-edited")).to_be_visible()
    await item.locator(".comment-delete").click()
    await item.locator(".comment-delete").click()
    await expect(item).to_have_count(0)
    await expect(page.locator("#comment-count")).to_have_text("1")
    status, listed = await bob.call("GET", f"/jobs/{job['id']}/comments")
    assert [c["author"] for c in listed["comments"]] == ["ada"]

    # Deleted (by an admin, here through the API) while being edited on the page: the draft stays, saying so.
    await mine.locator(".comment-edit").click()
    await mine.locator(".comment-editor textarea").fill("my unsaved words")
    assert (await admin.call("DELETE", f"/jobs/{job['id']}/comments/{listed['comments'][0]['id']}"))[0] == 200
    await expect(mine.locator(".comment-editor .error")).to_contain_text("deleted while you edited it")
    await expect(mine.locator(".comment-editor textarea")).to_have_value("my unsaved words")
    await expect(mine.locator(".comment-editor button[type=submit]")).to_be_disabled()
    await expect(mine.locator(".comment-edit")).to_be_disabled()  # nothing left to edit or delete
    await expect(mine.locator(".comment-delete")).to_be_disabled()
    await expect(mine.locator(".comment-head .comment-gone")).to_have_text("· deleted")
    await page.locator("#comments").screenshot(path="/tmp/shots/comments-deleted-while-editing.png")
    await mine.locator(".comment-editor button.secondary").click()
    await expect(mine).to_have_count(0)

    # A job with many comments: the page shows the newest 50, and the older ones on asking.
    many = await _job(admin, "many")
    assert queen.queen is not None
    with queen.raw_store() as raw:
        raw.comments.insert_many([{"_id": str(ulid.ULID()), "job": many["id"], "author": "ada", "text": f"n{n}",
                                          "html": f"<p>n{n}</p>\n", "renderer": 2, "created": time.time(),
                                          "edited": None} for n in range(55)])
    await page.goto(f"/jobs/{many['id']}")
    await expect(page.locator("#comment-list li.comment")).to_have_count(50)
    await expect(page.locator("#comment-list li.comment").first).to_contain_text("n5")
    await expect(page.locator("#comment-count")).to_have_text("55")
    await page.locator("#comment-older-p").screenshot(path="/tmp/shots/comments-show-older.png")
    await page.locator("#comment-older").click()
    await expect(page.locator("#comment-list li.comment")).to_have_count(55)
    await expect(page.locator("#comment-list li.comment").first).to_contain_text("n0")
    await expect(page.locator("#comment-older")).to_be_hidden()
    await expect(page.locator("#comment-count")).to_have_text("55")

    # A 1,000-character branch name is cut in the dashboard's table, not widening it.
    branch = "feature/" + "long-" * 198
    assert (await admin.call("POST", "/repos/many/jobs", {"branch": branch}))[0] == 201
    await page.goto("/")
    ref = page.locator(f'#jobs .ref[title="{branch}"]').first
    await expect(ref).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    print(f"dashboard width with a {len(branch)}-character branch: {width} px (viewport "
          f"{await page.evaluate('window.innerWidth')} px)")
    assert width <= await page.evaluate("window.innerWidth") + 1
    await page.screenshot(path="/tmp/shots/dashboard-long-ref.png")
