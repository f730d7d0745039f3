"""Bad API input gets a clear error naming the field, and changes nothing."""

from __future__ import annotations

import pytest

from tests.cluster import Cluster

GOOD_PIPELINE = {"stages": [{"name": "test", "steps": [{"run": "true"}]}]}


@pytest.mark.parametrize(("body", "field", "words"), [
    (b"{not json", "body", "not valid JSON"),
    (b"[1, 2]", "body", "must be a JSON object"),
    (b'{"pipeline": {"stages": []}}', "name", "required"),
    (b'{"name": "bad name!", "pipeline": {}}', "name", "not allowed"),
    (b'{"name": "r", "colour": "red", "pipeline": {}}', "colour", "unknown field"),
    (b'{"name": "r"}', "url", "required when the pipeline is read from the repository"),
    (b'{"name": "r", "pipeline_source": "queen"}', "pipeline", "required"),
    (b'{"name": "r", "url": "https://bob:hunter2@git.example.com/r.git"}', "url", "credentials do not belong"),
    (b'{"name": "r", "pipeline": "stages: [", "pipeline_source": "queen"}', "pipeline", "line 1"),
    (b'{"name": "r", "pipeline": {"stages": []}}', "pipeline.stages", "non-empty list"),
    (b'{"name": "r", "pipeline": {"stages": [{"name": "a", "steps": [{"run": 5}]}]}}',
     "pipeline.stages[0].steps[0].run", "non-empty command"),
    (b'{"name": "r", "pipeline": {"stages": [{"name": "a", "steps": ["x"], "nedds": []}]}}',
     "pipeline.stages[0].nedds", "unknown key"),
    (b'{"name": "r", "pipeline": {"stages": [{"name": "a", "steps": ["x"]}, {"name": "a", "steps": ["y"]}]}}',
     "pipeline.stages[1].name", "appears twice"),
])
async def test_bad_repository_is_refused_naming_the_field(queen: Cluster, body: bytes, field: str, words: str) -> None:
    status, answer = await queen.request("POST", "/repos", raw=body)
    assert status == 400
    assert answer["field"] == field and words in answer["error"], answer
    assert (await queen.get("/repos"))["repos"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "BUILD"}, "type"),
    ({"branch": 7}, "branch"),
    ({"parameters": ["A"]}, "parameters"),
    ({"parameters": {"1BAD": "x"}}, "parameters.1BAD"),
    ({"parameters": {"OK": {"nested": 1}}}, "parameters.OK"),
    ({"trigger": {"source": "robot"}}, "trigger.source"),
    ({"trigger": {"sauce": "API"}}, "trigger.sauce"),
    ({"when": "now"}, "when"),
])
async def test_bad_trigger_is_refused_naming_the_field_and_queues_nothing(queen: Cluster, body: dict, field: str) -> None:
    await queen.request("POST", "/repos", {"name": "app", "pipeline": GOOD_PIPELINE}, expect=201)
    status, answer = await queen.request("POST", "/repos/app/jobs", body)
    assert status == 400 and answer["field"] == field, answer
    assert (await queen.get("/repos/app/jobs"))["jobs"] == []


async def test_unknown_repository_job_and_endpoint_are_404(queen: Cluster) -> None:
    for method, path in [("POST", "/repos/ghost/jobs"), ("GET", "/repos/ghost"), ("GET", "/repos/ghost/jobs"),
                         ("GET", "/jobs/01NOSUCHJOB"), ("GET", "/jobs/01NOSUCHJOB/events"), ("GET", "/nothing")]:
        status, answer = await queen.request(method, path, {} if method == "POST" else None)
        assert status == 404, (method, path, answer)
        assert answer["error"]


async def test_bad_query_values_are_refused(queen: Cluster) -> None:
    await queen.request("POST", "/repos", {"name": "app", "pipeline": GOOD_PIPELINE}, expect=201)
    job = await queen.trigger("app")
    status, answer = await queen.request("GET", f"/jobs/{job['id']}/events?after=abc")
    assert status == 400 and answer["field"] == "after"
    status, answer = await queen.request("GET", "/repos/app/jobs?limit=0")
    assert status == 400 and answer["field"] == "limit"


async def test_registering_a_repository_twice_conflicts_and_put_replaces(queen: Cluster) -> None:
    await queen.request("POST", "/repos", {"name": "app", "pipeline": GOOD_PIPELINE}, expect=201)
    status, answer = await queen.request("POST", "/repos", {"name": "app", "pipeline": GOOD_PIPELINE})
    assert status == 409 and answer["field"] == "name"
    new = {"pipeline": {"stages": [{"name": "lint", "steps": ["ruff ."]}]}, "default_branch": "trunk"}
    await queen.request("PUT", "/repos/app", new, expect=200)
    repo = await queen.get("/repos/app")
    assert repo["default_branch"] == "trunk" and repo["pipeline"]["stages"][0]["name"] == "lint"
    job = await queen.trigger("app")
    assert job["ref"] == {"branch": "trunk"}
