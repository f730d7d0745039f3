"""The settings page's webhook (shown only where a plugin answers it, and that URL answers) and the badge of a
repository's default branch, on a real queen, in Chromium."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser import base_url, browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster

SHOTS = "/tmp/shots"


async def test_webhook_only_for_providers_with_a_plugin(queen: Cluster, page: Page) -> None:
    base = base_url(queen)
    await page.goto("/repos/new")
    assert await page.locator("#providers option").evaluate_all("os => os.map(o => o.value)") == [
        "git", "github", "gitlab", "gitea"]
    hooks = page.locator("#webhooks li")
    await expect(hooks).to_have_text([f"github: {base}/hooks/github/name",
                                      f"gitlab: {base}/hooks/gitlab/name",
                                      f"gitea: {base}/hooks/github/name (the github plugin)"])
    await page.screenshot(path=f"{SHOTS}/settings-new-webhooks.png", full_page=True)

    await queen.create_pipeline_repo("plain", "stages: [{name: t, steps: ['true']}]")
    await page.goto("/repos/plain/settings")
    await expect(page.locator("#webhook-none")).to_contain_text("No webhook: the provider git has no plugin that takes one")
    await expect(page.locator("#webhook")).to_have_count(0)
    await page.screenshot(path=f"{SHOTS}/settings-git-no-webhook.png", full_page=True)

    await queen.create_pipeline_repo("tea", "stages: [{name: t, steps: ['true']}]", provider="gitea")
    await page.goto("/repos/tea/settings")
    await expect(page.locator("#webhook")).to_have_text(f"{base}/hooks/github/tea")
    await expect(page.locator("#webhook-unused")).to_contain_text("once the github plugin is in this")
    await queen.request("PUT", "/repos/tea", {"pipeline": "stages: [{name: t, steps: ['true']}]",
                                              "provider": "gitea", "plugins": ["github"]}, expect=200)
    await page.reload()
    await expect(page.locator("#webhook")).to_have_text(f"{base}/hooks/github/tea")
    await expect(page.locator("#webhook-unused")).to_have_count(0)
    await shot(page, "settings-gitea-webhook")
    await page.screenshot(path=f"{SHOTS}/settings-gitea-webhook.png", full_page=True)
    # The URL shown is one the queen answers (a delivery without a signature: 401, not 404).
    assert queen.http is not None
    async with queen.http.post(f"{base}/hooks/github/tea", json={}, headers={"X-GitHub-Event": "push"}) as resp:
        assert resp.status == 401, await resp.text()


async def test_the_badge_follows_the_default_branch(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=2)
    await queen.create_pipeline_repo("b", 'stages: [{name: t, steps: [test "$APIARY_BRANCH" = trunk]}]',
                                     default_branch="trunk")
    assert queen.http is not None

    async def badge(path: str) -> str:
        async with queen.http.get(base_url(queen) + path) as resp:  # type: ignore[union-attr]
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("image/svg+xml")
            return await resp.text()

    assert ">no jobs<" in await badge("/badge/b.svg")
    assert (await queen.wait_job((await queen.trigger("b"))["id"]))["status"] == "passed"
    assert (await queen.wait_job((await queen.trigger("b", branch="feature/x"))["id"]))["status"] == "failed"
    assert ">passed<" in await badge("/badge/b.svg")  # the default branch's, not the newest job's
    assert ">failed<" in await badge("/badge/b.svg?branch=feature/x")
    assert ">failed<" in await badge("/badge/b/feature/x.svg")
    assert ">passed<" in await badge("/badge/b/trunk.svg")
    assert ">no jobs<" in await badge("/badge/b.svg?branch=other")
    # A spread stage's child jobs are parts of their parent's run: the newest job (cell N=2, passed while cell 1
    # ran on to fail) is not the branch's state, the failed parent is.
    await queen.create_pipeline_repo("bs", """stages: [{name: test, matrix: {N: ["1", "2"], spread: true},
                                                     steps: ['[ "$N" = 2 ] || { sleep 1; exit 1; }']}]""")
    parent = await queen.wait_job((await queen.trigger("bs"))["id"])
    assert parent["status"] == "failed"
    newest = (await queen.get("/repos/bs/jobs"))["jobs"][0]
    assert newest["parent"]["id"] == parent["id"] and newest["status"] == "passed"
    assert ">failed<" in await badge("/badge/bs.svg")
