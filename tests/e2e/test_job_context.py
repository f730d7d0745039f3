"""A job's context: who triggered it, the commit it runs, how long it has left, and its output searched.

Real queens and drones; users signed in with sessions and API tokens, the CLI as a subprocess, a
forge's webhook posted to the real endpoint, a real git repository; the job page in Chromium.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.async_api import Page, expect

from apiary.core.shown import plain
from tests.browser import browser, page  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_forges import SHA, add_repo, gh_push, github_hook, queued_job
from tests.e2e.test_users import Caller, _apiary, _close_callers, first_admin  # noqa: F401  (a fixture)
from tests.gitserver import commit, git
from tests.unit.test_logsearch import page_lines
from tests.unit.test_shown import SHOWN as TABLE

SHOTS = Path("/tmp/shots")
PIPELINE = "stages: [{name: s, steps: [\"echo hi\"]}]"


async def summary(cluster: Cluster, job_id: str, caller: Caller | None = None) -> str:
    """The job page's aside, as the page fetches it."""
    url = cluster.api.removesuffix("/api/v1") + f"/parts/jobs/{job_id}/summary"
    http = caller.http if caller is not None else cluster.http
    assert http is not None
    async with http.get(url) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_a_job_records_the_signed_in_user_or_the_tokens_owner_not_what_the_client_says(queen: Cluster) -> None:
    await queen.add_drone("d1")
    admin = await first_admin(queen)  # ada, signed in: a session
    assert (await admin.call("POST", "/repos", {"name": "app", "pipeline": PIPELINE}))[0] == 201

    # The dashboard's button: the session's user, whatever author the request names.
    status, job = await admin.call("POST", "/repos/app/jobs", {"trigger": {"source": "UI", "author": "mallory"}})
    assert status == 201, job
    assert job["triggered_by"] == {"kind": "user", "name": "ada"}
    assert job["trigger"]["author"] == {"name": "mallory"}  # kept as the client's label, nothing more
    shown = await summary(queen, job["id"], admin)
    assert re.search(r'id="job-trigger" data-kind="user">\s*<strong>ada</strong>', shown), shown
    assert "mallory" not in shown

    # A re-run: who pressed it, and which job it repeats.
    status, again = await admin.call("POST", f"/jobs/{job['id']}/rerun", {})
    assert status == 201 and again["triggered_by"] == {"kind": "rerun", "name": "ada", "job": job["id"],
                                                       "via": "session"}

    # An API token: its owner. The CLI uses one; the Unix login it sends is only a hint.
    status, made = await admin.call("POST", "/tokens", {"name": "laptop"})
    assert status == 201
    token = Caller(queen, token=made["token"])
    status, by_token = await token.call("POST", "/repos/app/jobs", {})
    assert status == 201 and by_token["triggered_by"] == {"kind": "token", "name": "ada"}
    code, out, err = await _apiary(queen, "trigger", "app", env={"APIARY_CLIENT_TOKEN": made["token"],
                                                                "USER": "unix-login"})
    assert code == 0, err
    cli_job = re.search(r"/jobs/(\w+)", out)
    assert cli_job, out
    status, from_cli = await token.call("GET", f"/jobs/{cli_job[1]}")
    assert from_cli["triggered_by"] == {"kind": "token", "name": "ada"}, from_cli
    assert from_cli["trigger"]["author"] == {"login": "unix-login"}
    for one in (job, again, by_token, from_cli):
        await queen.wait_for(lambda j=one: token.call("GET", f"/jobs/{j['id']}"),
                             lambda r: r[1]["status"] in ("passed", "failed", "errored"), "the job")


async def test_a_webhook_records_the_forge_and_the_commit_from_its_payload(queen: Cluster, page: Page) -> None:
    await add_repo(queen, "github", url="https://github.com/octo/app.git")
    job = await queued_job(queen, *await github_hook(queen, "push", gh_push()))
    assert job["triggered_by"] == {"kind": "webhook", "name": "github"}
    assert job["commit"] == {"message": "Greet in French\n\nBonjour.",
                             "author": {"name": "Mona Lisa", "email": "mona@example.com"},
                             "at": job["trigger"]["timestamp"], "source": "webhook"}
    assert job["links"] == {"commit": f"https://github.com/octo/app/commit/{SHA}",
                            "branch": "https://github.com/octo/app/tree/main"}

    await page.goto(f"/jobs/{job['id']}")
    aside = page.locator("#summary")
    await expect(aside.locator("#job-trigger")).to_contain_text("webhook github")
    link = aside.locator("#job-commit a")
    await expect(link).to_have_attribute("href", f"https://github.com/octo/app/commit/{SHA}")
    await expect(link.locator("code")).to_have_text(SHA[:10])
    await expect(link.locator("code")).to_have_attribute("title", SHA)
    await expect(aside.locator(".commit-subject")).to_have_text("Greet in French")
    await expect(aside.locator(".commit-author")).to_contain_text("by Mona Lisa")
    await aside.locator(".commit-subject").click()  # the rest of the message, on demand
    await expect(aside.locator(".commit-message .msg")).to_have_text("Bonjour.")
    SHOTS.mkdir(exist_ok=True)
    await aside.screenshot(path=SHOTS / "job-aside-webhook.png")


async def test_a_job_from_a_real_repository_records_its_commits_message_and_author(queen: Cluster, tmp_path: Path,
                                                                                   page: Page) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    sha = commit(work, {".apiary.yml": PIPELINE}, "Add the pipeline\n\nIt says hi.")
    bare = tmp_path / "app.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "app", "url": bare.as_uri()}, expect=201)

    job = await queen.trigger("app")
    assert job["ref"] == {"branch": "main", "id": sha}
    assert job["commit"] == {"message": "Add the pipeline\n\nIt says hi.",
                             "author": {"name": "Ada Tester", "email": "ada@example.com"},
                             "at": 1704110400.0, "source": "repository"}
    assert job["triggered_by"] == {"kind": "setup", "name": ""}  # a queen without users, open on loopback
    assert job["links"] == {}  # file://: no web page
    assert (await queen.wait_job(job["id"]))["status"] == "passed"
    shown = await summary(queen, job["id"])
    assert "Add the pipeline" in shown and "by Ada Tester" in shown and f'title="{sha}"' in shown
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("#job-commit .commit-subject")).to_have_text("Add the pipeline")
    await expect(page.locator("#job-commit a")).to_have_count(0)  # no web page to link to
    SHOTS.mkdir(exist_ok=True)
    await page.locator("#summary").screenshot(path=SHOTS / "job-aside-repository.png")


async def test_a_stored_pipeline_gets_its_commits_subject_and_author_from_the_checkout(queen: Cluster,
                                                                                       tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    sha = commit(work, {"app.txt": "one\n"}, "Start the app, at last\n\nThe body stays in the repository.")
    bare = tmp_path / "app.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(work, "push", "-q", str(bare), "main:refs/heads/main")
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE, url=bare.as_uri())

    job = await queen.trigger("app")
    assert "commit" not in job and job["ref"] == {"branch": "main"}  # the queen never fetched it
    done = await queen.wait_job(job["id"])
    assert done["status"] == "passed"
    assert done["ref"]["id"] == sha
    assert done["commit"] == {"message": "Start the app, at last", "author": {"name": "Ada Tester"},
                              "at": 1704110400.0, "source": "checkout"}
    shown = await summary(queen, job["id"])
    assert "Start the app, at last" in shown and "by Ada Tester" in shown


async def test_a_running_job_says_how_long_it_has_left_from_the_last_passing_jobs(queen: Cluster,
                                                                                 page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", "parameters: {NAP: {default: '2'}}\n"
                                            "stages: [{name: s, steps: [\"sleep $NAP\"]}]")
    durations = []
    for _ in range(2):
        done = await queen.wait_job((await queen.trigger("app"))["id"])
        assert done["status"] == "passed" and "estimate" not in done
        durations.append(done["duration"])

    slow = await queen.trigger("app", parameters={"NAP": "60"})
    running = await queen.wait_for(lambda: queen.job(slow["id"]), lambda j: j["status"] == "running", "running")
    estimate = running["estimate"]
    print(f"estimate of a running job: {estimate} (earlier durations {durations})")
    assert estimate["based_on"] == 2
    assert abs(estimate["expected_s"] - statistics.median(durations)) < 0.01
    assert estimate["elapsed_s"] >= 0
    assert estimate["left_s"] == pytest.approx(max(0.0, estimate["expected_s"] - estimate["elapsed_s"]), abs=0.01)

    await page.goto(f"/jobs/{slow['id']}")
    shown = page.locator("#job-estimate")
    await expect(shown).to_have_text("a few seconds left")  # ~2 s: said as apiary ls says it
    SHOTS.mkdir(exist_ok=True)
    await page.locator("#summary").screenshot(path=SHOTS / "job-aside-estimate.png")
    # Counted down on the page, then over time: "taking longer than usual" (the job naps far longer).
    await expect(shown).to_have_text("taking longer than usual", timeout=15_000)
    SHOTS.mkdir(exist_ok=True)
    await page.locator("#summary").screenshot(path=SHOTS / "job-aside-running.png")
    await queen.request("POST", f"/jobs/{slow['id']}/cancel", expect=202)
    ended = await queen.wait_job(slow["id"])
    assert "estimate" not in ended
    await expect(shown).to_have_count(0, timeout=10_000)  # the aside, refreshed, has none


async def test_search_finds_lines_of_a_long_log_where_the_page_has_them(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("big", ("print", ["echo first", "seq 1 50000 | sed 's/^/line /'",
                                              "for i in $(seq 1 3000); do echo \"out $i\"; echo \"ERR $i\" >&2; done"]))
    job = await queen.wait_job((await queen.trigger("big"))["id"])
    assert job["status"] == "passed"
    nums = {c["command"]: c["num"] for c in job["commands"]}
    seq_num = next(n for cmd, n in nums.items() if cmd.startswith("seq"))
    events = await queen.events(job["id"])
    chunks = [e for e in events if e["type"] == "job:cmd:stdout" and e.get("num") == seq_num]
    assert len(chunks) > 1  # the lines come in many chunks, some lines cut between two

    took = time.perf_counter()
    status, found = await queen.request("GET", f"/jobs/{job['id']}/search?q=LINE%204999", expect=200)
    print(f"search of a 50,000-line log ({len(chunks)} chunks): {time.perf_counter() - took:.3f} s")
    want = [4999] + list(range(49990, 50000))
    assert found == {"matches": [{"num": seq_num, "stream": "stdout", "line": n - 1, "text": f"line {n}"}
                                 for n in want], "truncated": False}

    # Where the page puts each line, stdout and stderr of one command together (web/static/apiary.js).
    output = [(e["num"], "stdout" if e["type"] == "job:cmd:stdout" else "stderr", e["text"]) for e in events
              if e["type"] in ("job:cmd:stdout", "job:cmd:stderr")]
    lines = page_lines(output)
    status, found = await queen.request("GET", f"/jobs/{job['id']}/search?q=err%2029&limit=1000", expect=200)
    assert found["matches"] and not found["truncated"]
    for match in found["matches"]:
        assert lines[match["num"]][match["line"]] == (match["text"], match["stream"])
    assert sorted(m["text"] for m in found["matches"]) == sorted(
        t for t, _ in lines[found["matches"][0]["num"]] if "err 29" in t.lower())

    status, few = await queen.request("GET", f"/jobs/{job['id']}/search?q=line&limit=5", expect=200)
    assert [m["line"] for m in few["matches"]] == [0, 1, 2, 3, 4] and few["truncated"] is True
    for query, field in (("", "q"), ("?q=", "q"), ("?q=" + "x" * 201, "q"), ("?q=a&limit=0", "limit"),
                         ("?q=a&limit=1001", "limit")):
        status, error = await queen.request("GET", f"/jobs/{job['id']}/search{query}")
        assert (status, error.get("field")) == (400, field), (query, error)
    status, _ = await queen.request("GET", "/jobs/nope/search?q=a")
    assert status == 404


def printf(line: str) -> str:
    """A shell command printing `line` and a newline exactly (every character but a letter or digit in octal)."""
    return "printf '" + "".join(c if c.isalnum() else f"\\{ord(c):03o}" for c in line) + "\\n'"


# Colours, window titles, OSC 8 links (one to javascript:, shown as text), a progress bar, cursor moves:
# the lines of the table the unit tests hold plain() to, then two more to search for.
LINES = [line for line, _ in TABLE] + ["\x1b]8;;https://example.com/docs\x1b\\the docs\x1b]8;;\x1b\\ here",
                                       "downloading 10%\rdownloading 100%"]
SHOWN = [shown for _, shown in TABLE] + ["the docs here", "downloading 100%"]
ESCAPED = json.dumps({"stages": [{"name": "print", "steps": [
    {"run": "\n".join([*map(printf, LINES), "exit 1"]), "title": "Print escapes"}]}]})


async def test_search_finds_what_the_page_shows_not_the_escapes(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("escapes", ESCAPED)
    job = await queen.wait_job((await queen.trigger("escapes"))["id"])
    assert job["status"] == "failed"
    num = next(c["num"] for c in job["commands"] if c.get("stage") == "print")
    output = [(e["num"], "stdout" if e["type"] == "job:cmd:stdout" else "stderr", e["text"])
              for e in await queen.events(job["id"]) if e["type"] in ("job:cmd:stdout", "job:cmd:stderr")]
    raw = [text for text, _ in page_lines(output)[num]]
    assert raw == LINES and [plain(line) for line in raw] == SHOWN

    # What the page draws of each line is plain() of it.
    await page.goto(f"/jobs/{job['id']}")
    box = page.locator(f"#cmd-{num}")
    await expect(box).to_have_attribute("open", "")  # failed: open
    lines = box.locator(".log .ln")
    await expect(lines).to_have_count(len(raw))
    assert await lines.all_text_contents() == SHOWN
    link = box.get_by_role("link", name="the docs")
    assert await link.get_attribute("href") == "https://example.com/docs"
    await expect(box.locator(".log a")).to_have_count(2)  # the two https links; javascript: stays text
    await expect(page.locator(".outcome-failure .o-lines")).to_have_text("\n".join(SHOWN[-10:]) + "\n")

    # The API finds what the page's search finds, on the page's lines, and returns the shown text.
    search = page.get_by_role("searchbox", name="Search the output")
    count = page.locator("#log-count")
    at = {text: i for i, text in enumerate(SHOWN)}
    for q, hits in (("red normal", ["red normal"]), ("31m", []), ("EVIL", []), ("link: jslink", ["link: jslink done"]),
                    ("javascript", []), ("example.com", []), ("the docs", ["the docs here"]), ("10%", []),
                    ("100%", ["100% done", "downloading 100%"]), ("cleared", ["cleared"]), ("2K", [])):
        _, found = await queen.request("GET", f"/jobs/{job['id']}/search?q={quote(q)}", expect=200)
        assert [(m["num"], m["line"], m["text"]) for m in found["matches"]] == [(num, at[t], t) for t in hits], q
        await search.fill(q)
        await expect(count).to_have_text(f"1 of {len(hits)}" if hits else "No matches")
    await search.fill("link: jslink")
    await expect(box.locator(".ln mark.hit.now")).to_have_text("link: jslink")
    SHOTS.mkdir(exist_ok=True)
    await page.locator(".outcome-failure").screenshot(path=str(SHOTS / "outcome-escapes.png"))
    await box.screenshot(path=str(SHOTS / "log-escapes-search.png"))


async def test_a_schedule_and_a_chain_are_what_triggered_their_jobs(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("up", PIPELINE)
    await queen.create_pipeline_repo("down", PIPELINE, plugins=[{"name": "after", "config": {"repos": ["up"]}}])
    await queen.create_pipeline_repo("tick", PIPELINE, plugins=[{"name": "schedule", "config": {
        "schedules": [{"every": "1h"}, {"every": "1s", "branch": "nightly"}]}}])

    up = await queen.trigger("up")
    down = await queen.wait_for(lambda: queen.get("/repos/down/jobs"), lambda r: r["jobs"], "the chained job")
    assert down["jobs"][0]["triggered_by"] == {"kind": "chain", "name": up["id"]}
    shown = await summary(queen, down["jobs"][0]["id"])
    assert f'after <a href="/jobs/{up["id"]}">up #1</a> passed' in shown, shown

    tick = await queen.wait_for(lambda: queen.get("/repos/tick/jobs"), lambda r: r["jobs"], "a scheduled job",
                                timeout=10)
    assert tick["jobs"][0]["triggered_by"] == {"kind": "schedule", "name": "every 1s"}
    assert "schedule <code>every 1s</code>" in await summary(queen, tick["jobs"][0]["id"])
    await queen.request("PUT", "/repos/tick", {"pipeline": PIPELINE, "pipeline_source": "queen"}, expect=200)
