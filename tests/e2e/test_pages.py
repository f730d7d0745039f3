"""The dashboard in a real browser on a real queen: pages, live updates, forms, errors."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser import base_url, browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster

PARAM_PIPELINE = """\
parameters:
  TARGET: {required: true, description: where it goes}
  GREETING: {default: hello}
stages:
  - name: say
    steps:
      - 'for i in 1 2 3 4 5 6; do echo "line $i: $GREETING $TARGET"; sleep 0.4; done'
      - printf '\\033[1;32mgreen\\033[0m <b>plain</b>\\n'
"""


async def jobs_of(queen: Cluster, repo: str) -> list[dict]:
    return (await queen.get(f"/repos/{repo}/jobs"))["jobs"]


async def test_register_a_repository_through_the_settings_page(queen: Cluster, page: Page) -> None:
    await page.goto("/repos/new")
    await page.locator("#r-name").fill("web-app")
    await page.get_by_label("stored on the queen").check()
    await page.get_by_label("Stored pipeline").fill("stages: [")
    await page.get_by_role("button", name="Register repository").click()
    # A fault is shown next to the field it is about, and nothing is registered.
    await expect(page.locator("#err-pipeline")).to_contain_text("line 1")
    assert (await queen.get("/repos"))["repos"] == []
    await shot(page, "register-refused")

    await page.get_by_label("Stored pipeline").fill("stages:\n  - name: test\n    steps: [make test]\n")
    await page.get_by_label("Keep jobs").fill("20")
    await page.get_by_role("button", name="Register repository").click()
    await page.wait_for_url("**/repos/web-app")
    repo = await queen.get("/repos/web-app")
    assert repo["pipeline_source"] == "queen" and repo["retention"] == {"keep_jobs": 20}

    await page.get_by_role("link", name="Settings").click()
    await page.get_by_label("Default branch").fill("trunk")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#saved")).to_be_visible()
    assert (await queen.get("/repos/web-app"))["default_branch"] == "trunk"
    await expect(page.locator("#webhook-none")).to_contain_text("No webhook")  # provider git: no plugin takes one
    await page.locator("#s-name").fill("DEPLOY_TOKEN")
    await page.locator("#s-value").fill("s3cr3t-value")
    await page.get_by_role("button", name="Set secret").click()
    await expect(page.locator("#secrets li")).to_have_count(1)
    await expect(page.locator("#secrets")).to_contain_text("DEPLOY_TOKEN")
    assert "s3cr3t-value" not in await page.content()
    assert (await queen.get("/repos/web-app/secrets"))["secrets"][0]["name"] == "DEPLOY_TOKEN"
    await shot(page, "settings")

    delete = page.get_by_role("button", name="Delete secret DEPLOY_TOKEN")
    await delete.click()
    await delete.click()  # the second press deletes
    await expect(page.locator("#secrets-empty")).to_be_visible()
    assert (await queen.get("/repos/web-app/secrets"))["secrets"] == []


async def test_trigger_button_refuses_a_missing_parameter_then_runs_and_streams_live(queen: Cluster,
                                                                                     page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PARAM_PIPELINE)
    await page.goto("/repos/app")
    await expect(page.locator("#t-branch")).to_have_value("main")
    await expect(page.get_by_label("GREETING")).to_have_value("hello")
    await expect(page.locator("[data-field='parameters.TARGET'] .req")).to_have_text("required")

    await page.get_by_role("button", name="Trigger a job").click()
    error = page.locator("#err-parameters-TARGET")
    await expect(error).to_contain_text("required by the pipeline")
    await expect(page.get_by_label("TARGET")).to_have_attribute("aria-invalid", "true")
    assert await jobs_of(queen, "app") == []
    await shot(page, "trigger-refused")

    await page.get_by_label("TARGET").fill("staging")
    await page.get_by_role("button", name="Trigger a job").click()
    await page.wait_for_url(re.compile(r"/jobs/\w+$"))
    job_id = page.url.rsplit("/", 1)[1]
    log = page.locator(".cmd .log").first
    # Lines arrive while the job runs.
    await expect(log).to_contain_text("line 2: hello staging")
    assert "line 6" not in await log.inner_text()
    await expect(page.locator("#job-status")).to_have_text("running")
    await expect(log).to_contain_text("line 6: hello staging", timeout=20_000)
    await expect(page.locator("#job-status")).to_have_text("passed", timeout=20_000)
    await expect(page.locator("#summary")).to_contain_text("GREETING=hello")
    await page.locator(".cmd summary").nth(1).click()
    await expect(page.locator(".cmd .log .c32.b")).to_have_text("green")  # ANSI bold green
    await expect(page.locator(".cmd .log").nth(1)).to_contain_text("<b>plain</b>")  # text, not markup
    job = await queen.job(job_id)
    assert job["trigger"]["source"] == {"type": "UI"} and job["parameters"] == {"TARGET": "staging",
                                                                               "GREETING": "hello"}
    await shot(page, "job")
    assert queen.http is not None
    async with queen.http.get(f"{base_url(queen)}/jobs/{job_id}/log") as resp:
        assert resp.content_type == "text/plain"
        text = await resp.text()
    assert text.splitlines()[:6] == [f"line {i}: hello staging" for i in range(1, 7)]
    assert text.endswith("\x1b[1;32mgreen\x1b[0m <b>plain</b>\n")


async def test_cancel_a_running_job_then_rerun_it(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("slow", ("wait", ["echo started; sleep 60"]))
    job = await queen.trigger("slow")
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator(".cmd .log")).to_contain_text("started")
    await page.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=20_000)
    await expect(page.get_by_role("button", name="Cancel")).to_be_disabled()
    assert (await queen.job(job["id"]))["status"] == "cancelled"
    await shot(page, "cancelled")
    await page.set_viewport_size({"width": 390, "height": 800})
    await shot(page, "cancelled-narrow")
    await page.set_viewport_size({"width": 1280, "height": 860})

    await page.get_by_role("button", name="Re-run").click()
    await page.wait_for_url(re.compile(r"/jobs/(?!" + job["id"] + r")\w+$"))
    rerun_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#summary")).to_contain_text("re-run of")
    await expect(page.locator(".cmd .log")).to_contain_text("started")
    rerun = await queen.job(rerun_id)
    assert rerun["rerun_of"] == job["id"] and rerun["number"] == 2
    await queen.request("POST", f"/jobs/{rerun_id}/cancel", expect=202)
    await expect(page.locator("#job-status")).to_have_text("cancelled", timeout=20_000)


async def test_drones_page_shows_a_drone_join_and_leave(queen: Cluster, page: Page) -> None:
    await page.goto("/drones")
    await expect(page.locator("#drones")).to_contain_text(f"No drones yet: run apiary drone --queen {queen.endpoint}")
    await shot(page, "drones-empty")
    drone = await queen.add_drone("worker-1", capacity=2, speed=1.5)
    row = page.locator("#drone-worker-1")
    await expect(row).to_contain_text("0 / 2")
    await expect(row).to_contain_text("1.5")
    await queen.create_repo("slow", ("wait", ["sleep 60"]))
    job = await queen.trigger("slow")
    await expect(row.get_by_role("link", name="slow #1")).to_have_attribute("href", f"/jobs/{job['id']}")
    await expect(row).to_contain_text("1 / 2")
    await shot(page, "drones")
    await queen.request("POST", f"/jobs/{job['id']}/cancel", expect=202)
    await expect(row).to_contain_text("0 / 2")
    await drone.stop()
    await expect(row).to_have_count(0)
    await expect(page.locator("#drones")).to_contain_text("No drones yet")


async def test_a_finished_job_of_200000_lines_scrolls_to_its_end(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("big", ("count", ["seq 1 200000"]))
    job = await queen.wait_job((await queen.trigger("big"))["id"])
    assert job["status"] == "passed"
    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator(".cmd")).to_have_attribute("data-state", "passed")
    await page.locator(".cmd summary").click()  # passed: closed; opened, it shows its tail
    log = page.locator(".cmd .log")
    last = log.locator('.ln[data-n="200000"]')
    await expect(last).to_have_text("200000")
    await log.scroll_into_view_if_needed()
    await expect(last).to_be_in_viewport()
    # Only the visible window is in the page, not 200,000 elements.
    assert await log.locator(".ln").count() < 200
    await log.click()
    await page.keyboard.press("Home")
    await expect(log.locator(".ln").first).to_have_text("1")
    await expect(log.locator('.ln[data-n="1"]')).to_be_in_viewport()
    assert await log.locator(".ln").count() < 200
    await shot(page, "big-log")


async def test_the_job_page_reconnects_after_a_queen_restart_without_losing_or_doubling_lines(
        queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("steady", ("tick", ['for i in $(seq 1 25); do echo "tick $i"; sleep 0.2; done']))
    job = await queen.trigger("steady")
    await page.goto(f"/jobs/{job['id']}")
    log = page.locator(".cmd .log")
    await expect(log).to_contain_text("tick 3")
    assert queen.queen is not None
    await queen.queen.stop()
    await expect(page.locator("#conn")).to_have_text("Reconnecting…")
    await queen.start_queen()
    await expect(page.locator("#job-status")).to_have_text("passed", timeout=30_000)
    await expect(page.locator("#conn")).to_be_hidden()
    await page.locator(".cmd summary").click()  # passed: closed
    await expect(log.locator(".ln")).to_have_count(25)
    assert await log.locator(".ln").all_inner_texts() == [f"tick {i}" for i in range(1, 26)]


async def test_dashboard_goes_live_and_badges_tell_the_last_result(queen: Cluster, page: Page) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("badged", ("test", ['test "$APIARY_BRANCH" = main']))
    await page.goto("/")
    await expect(page.locator("#jobs-empty")).to_be_visible()
    assert queen.http is not None
    base = base_url(queen)

    async def badge(path: str) -> str:
        async with queen.http.get(base + path) as resp:  # type: ignore[union-attr]
            assert resp.headers["Cache-Control"] == "no-cache"
            assert resp.headers["Content-Type"].startswith("image/svg+xml")
            return await resp.text()

    assert "no jobs" in await badge("/badge/badged.svg")
    passed = await queen.trigger("badged")
    row = page.locator(f"tr[data-job='{passed['id']}']")
    await expect(row).to_contain_text("badged")  # appeared without a reload
    await expect(row.locator(".status")).to_have_text("passed")
    await queen.wait_job(passed["id"])
    assert ">passed<" in await badge("/badge/badged.svg")
    failed = await queen.wait_job((await queen.trigger("badged", branch="feature/x"))["id"])
    assert failed["status"] == "failed"
    await expect(page.locator(f"tr[data-job='{failed['id']}'] .status")).to_have_text("failed")
    assert ">passed<" in await badge("/badge/badged.svg")  # the default branch's
    assert ">passed<" in await badge("/badge/badged/main.svg")
    assert ">failed<" in await badge("/badge/badged/feature/x.svg")
    assert "no jobs" in await badge("/badge/badged/other.svg")
    await shot(page, "dashboard")
    await page.goto("/repos/badged?branch=main")
    await expect(page.locator("#jobs tbody tr")).to_have_count(1)
    await expect(page.locator("#jobs tbody tr")).to_contain_text("main")
    await page.goto("/")
    await page.set_viewport_size({"width": 390, "height": 800})
    await shot(page, "dashboard-narrow")

    for path in ("/jobs/no-such-job", "/repos/nothing-here", "/no/such/page"):
        response = await page.goto(path)
        assert response is not None and response.status == 404, path
        assert response.headers["content-type"].startswith("text/html")
        await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await shot(page, "not-found")
    async with queen.http.get(base + "/api/v1/no-such-endpoint") as resp:
        assert resp.status == 404 and await resp.json() == {"error": "no such endpoint"}


async def test_plugins_and_branch_filters_are_set_on_the_settings_page(queen: Cluster, page: Page) -> None:
    await queen.create_pipeline_repo("app", "stages: [{name: t, steps: [make]}]")
    await page.goto("/repos/app/settings")
    await expect(page.locator(".plugin-list")).to_contain_text("github")
    await page.get_by_label("Plugins").fill("- name: github\n  config: {api: not-a-url}\n")
    await page.get_by_role("button", name="Save settings").click()
    # The fault names the plugin's field, next to the plugins box; nothing is saved.
    await expect(page.locator("#err-plugins")).to_contain_text("plugins[0].config.api")
    assert (await queen.get("/repos/app"))["plugins"] == []

    await page.get_by_label("Plugins").fill("- name: github\n  config: {api: 'https://gitea.example.com/api/v1'}\n")
    await page.get_by_label("Include").fill("main, release/*")
    await page.get_by_label("Exclude").fill("release/old")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#saved")).to_be_visible()
    repo = await queen.get("/repos/app")
    assert repo["plugins"][0]["name"] == "github"
    assert repo["plugins"][0]["config"]["api"] == "https://gitea.example.com/api/v1"
    assert repo["branches"] == {"include": ["main", "release/*"], "exclude": ["release/old"]}
    await page.reload()
    await expect(page.get_by_label("Plugins")).to_have_value(re.compile(r"name: github"))
    await expect(page.get_by_label("Include")).to_have_value("main, release/*")
    await expect(page.locator("#webhook")).to_have_text(f"{base_url(queen)}/hooks/github/app")
    await shot(page, "settings-plugins")


async def test_a_pipeline_read_from_the_repository_gets_a_field_per_parameter_its_last_job_was_given(
        queen: Cluster, page: Page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.test_job_page_live import local_repo
    url = local_repo(tmp_path, "parameters:\n  WHO: {default: world, description: who to greet}\n"
                               "stages: [{name: s, steps: ['echo hello $WHO']}]\n")
    await queen.add_drone("d1")
    await queen.request("POST", "/repos", {"name": "greet", "url": url})
    await page.goto("/repos/greet")
    await expect(page.locator("#t-params")).to_be_visible()  # no job yet: the pipeline is only read at a commit
    await queen.wait_job((await queen.trigger("greet"))["id"])

    await page.goto("/repos/greet")
    await expect(page.get_by_label("WHO")).to_have_value("world")
    await expect(page.locator("#params-from")).to_contain_text("As the pipeline declared them at #1")
    await shot(page, "trigger-fields-from-the-repository")
    await page.get_by_label("WHO").fill("bees")
    await page.get_by_role("button", name="Trigger a job").click()
    await page.wait_for_url(re.compile(r"/jobs/\w+$"))
    job = await queen.wait_job(page.url.rsplit("/", 1)[1])
    assert job["status"] == "passed" and job["parameters"] == {"WHO": "bees"}
