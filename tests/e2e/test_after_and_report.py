"""The after plugin (jobs that follow other repositories' passing jobs) and the report plugin (_bulk NDJSON)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.cluster import Cluster

PASS = "stages:\n  - {name: ok, steps: [\"echo ok\"]}\n"
FAIL = "stages:\n  - {name: ko, steps: [\"exit 1\"]}\n"


def follows(*repos: str, **config: Any) -> list[dict[str, Any]]:
    return [{"name": "after", "config": {"repos": list(repos), **config}}]


async def jobs_of(queen: Cluster, repo: str) -> list[dict[str, Any]]:
    return (await queen.get(f"/repos/{repo}/jobs"))["jobs"]


async def queen_log(queen: Cluster, text: str) -> str:
    assert queen.queen is not None
    proc = queen.queen
    return await queen.wait_for(lambda: asyncio.to_thread(proc.stderr.read_text), lambda log: text in log,
                                f"{text!r} in the queen's log", timeout=10)


# -- after: a real queen ---------------------------------------------------------------------

async def test_a_passing_job_triggers_its_followers_down_the_chain(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=4)
    await queen.create_pipeline_repo("a", PASS)
    await queen.create_pipeline_repo("b", PASS, plugins=follows("a", branch="stable"))
    await queen.create_pipeline_repo("c", "parameters: {FROM: {required: true}}\n" + PASS,
                                     plugins=follows("b", parameters={"FROM": "b"}))
    await queen.create_pipeline_repo("only-release", PASS, plugins=follows("a", upstream_branch="release/*"))
    await queen.create_pipeline_repo("f", FAIL)
    await queen.create_pipeline_repo("g", PASS, plugins=follows("f"))

    a = await queen.trigger("a")
    f = await queen.trigger("f")
    c_jobs = await queen.wait_for(lambda: jobs_of(queen, "c"), lambda js: js and js[0]["status"] == "passed",
                                  "c's job to pass", timeout=20)
    (b_job,) = await jobs_of(queen, "b")
    (c_job,) = c_jobs
    assert b_job["status"] == "passed" and b_job["ref"] == {"branch": "stable"}
    trigger = b_job["trigger"]
    assert trigger["type"] == "after" and trigger["message"] == "after a #1 passed"
    assert trigger["author"] == {"name": "after"} and trigger["url"].endswith(f"/jobs/{a['id']}")
    assert trigger["source"] == {"type": "plugin", "plugin": "after", "job": a["id"], "repo": "a", "number": 1,
                                 "chain": ["a"]}
    assert c_job["trigger"]["source"]["chain"] == ["a", "b"] and c_job["trigger"]["source"]["job"] == b_job["id"]
    assert c_job["trigger"]["message"] == "after b #1 passed" and c_job["parameters"] == {"FROM": "b"}

    assert (await queen.wait_job(f["id"]))["status"] == "failed"
    await asyncio.sleep(1.0)  # reactions to f's end have run by now
    assert await jobs_of(queen, "g") == [] and await jobs_of(queen, "only-release") == []

    # A branch filter lets matching upstream jobs through.
    await queen.trigger("a", branch="release/1")
    await queen.wait_for(lambda: jobs_of(queen, "only-release"), lambda js: len(js) == 1, "only-release's job")


async def test_a_loop_stops_after_one_round_and_a_refusal_is_logged(queen: Cluster) -> None:
    await queen.add_drone("d1", capacity=4)
    await queen.create_pipeline_repo("p", PASS, plugins=follows("q"))
    await queen.create_pipeline_repo("q", PASS, plugins=follows("p", "q"))
    await queen.create_pipeline_repo("needs", "parameters: {X: {required: true}}\n" + PASS, plugins=follows("q"))

    first = await queen.trigger("p")
    q_jobs = await queen.wait_for(lambda: jobs_of(queen, "q"), lambda js: js and js[0]["status"] == "passed",
                                  "q's job to pass", timeout=20)
    assert q_jobs[0]["trigger"]["source"]["chain"] == ["p"]
    await queen_log(queen, "repository p not triggered after q #1: already in the chain p -> q")
    await queen_log(queen, "repository q not triggered after q #1: already in the chain p -> q")
    await queen_log(queen, "repository needs not triggered after q #1: ")
    await asyncio.sleep(0.5)
    assert [j["id"] for j in await jobs_of(queen, "p")] == [first["id"]]
    assert len(await jobs_of(queen, "q")) == 1 and await jobs_of(queen, "needs") == []


# -- report: a real queen and a stand-in for Elasticsearch ----------------------------------------

class FakeElastic:
    """An HTTP server on a port the OS gives that records _bulk requests and answers as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[tuple[int, Any]] = []  # consumed in order; then 200 without errors
        self.url = ""

    async def bulk(self, request: web.Request) -> web.Response:
        self.received.append({"path": request.path, "headers": dict(request.headers),
                              "body": await request.text()})
        status, body = self.answers.pop(0) if self.answers else (200, {"errors": False, "items": [{}]})
        return web.json_response(body, status=status)

    async def wait(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        for _ in range(int(timeout / 0.02)):
            if len(self.received) >= count:
                return self.received
            await asyncio.sleep(0.02)
        raise AssertionError(f"{count} requests expected, {len(self.received)} received")


@pytest.fixture
async def elastic() -> AsyncIterator[FakeElastic]:
    fake = FakeElastic()
    app = web.Application()
    app.router.add_post("/_bulk", fake.bulk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}/_bulk"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def test_a_finished_job_is_sent_as_bulk_ndjson(queen: Cluster, elastic: FakeElastic) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PASS, plugins=[{"name": "report", "config": {
        "url": elastic.url, "index": "ci-jobs", "token_secret": "ES_KEY"}}])
    await queen.request("PUT", "/repos/app/secrets/ES_KEY", {"value": "c2VjcmV0"}, expect=200)
    await queen.create_pipeline_repo("quiet", PASS)  # does not use the plugin

    await queen.trigger("quiet")
    job = await queen.trigger("app")
    done = await queen.wait_job(job["id"])
    (request,) = await elastic.wait(1)

    assert request["path"] == "/_bulk"
    assert request["headers"]["Content-Type"] == "application/x-ndjson"
    assert request["headers"]["Authorization"] == "ApiKey c2VjcmV0"
    lines = request["body"].split("\n")
    assert len(lines) == 3 and lines[2] == ""
    assert json.loads(lines[0]) == {"index": {"_index": "ci-jobs", "_id": job["id"]}}
    doc = json.loads(lines[1])
    assert (doc["id"], doc["repo"], doc["number"], doc["status"]) == (job["id"], "app", 1, "passed")
    assert [(c["num"], c["command"], c["exitCode"]) for c in doc["commands"]] == [(1, "echo ok", 0)]
    assert doc["duration"] == pytest.approx(done["finished"] - done["started"], abs=1e-5)
    assert doc["@timestamp"].endswith("+00:00") and doc["trigger"]["type"] == done["trigger"]["type"]
    assert "pipeline" not in doc and "_id" not in doc
    await asyncio.sleep(0.5)
    assert len(elastic.received) == 1  # nothing for "quiet"


async def test_a_refusing_endpoint_is_logged_and_hurts_nothing(queen: Cluster, elastic: FakeElastic) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PASS, plugins=[{"name": "report", "config": {"url": elastic.url}}])
    elastic.answers = [(500, {"error": "boom"}),
                       (200, {"errors": True, "items": [{"index": {"status": 400, "error": {
                           "type": "mapper_parsing_exception", "reason": "bad field"}}}]}),
                       (503, {"error": "busy"})]  # the third job's first attempt: retried

    first = await queen.trigger("app")
    assert (await queen.wait_job(first["id"]))["status"] == "passed"
    await elastic.wait(1)
    await queen_log(queen, f"job app #1 ({first['id']}) not reported to {elastic.url}: answered 500")

    second = await queen.trigger("app")
    assert (await queen.wait_job(second["id"]))["status"] == "passed"
    await elastic.wait(2)
    await queen_log(queen, "job app #2 (" + second["id"] + ") not reported to "
                    f"{elastic.url}: item refused (400): mapper_parsing_exception: bad field")

    third = await queen.trigger("app")
    assert (await queen.wait_job(third["id"]))["status"] == "passed"
    received = await elastic.wait(4)
    assert [json.loads(r["body"].split("\n")[0])["index"]["_id"] for r in received] == [
        first["id"], second["id"], third["id"], third["id"]]
    assert "Authorization" not in received[0]["headers"]
    assert queen.queen is not None
    assert (await asyncio.to_thread(queen.queen.stderr.read_text)).count("not reported") == 2
