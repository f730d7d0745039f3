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


# What used to pass the API and then fail the job as it started ("embedded null byte", "Argument list too
# long"), name a ref git refuses, or show on the pages as what it is not: the repository has no URL, so
# nothing but this check stands before the drone.
NEVER_RUNS = [
    ({"parameters": {"P": "a\0b"}}, "parameters.P", "NUL byte"),
    ({"parameters": {"P": "v" * 200_000}}, "parameters.P", "64 KiB"),
    ({"parameters": {f"P{i}": "v" * 60_000 for i in range(6)}}, "parameters.P4", "256 KiB"),
    ({"branch": "-x"}, "branch", "not a valid ref name"),
    ({"branch": "ma\0in"}, "branch", "not a valid ref name"),
    ({"branch": "b" * 100_000}, "branch", "longer than 1024"),
    ({"commit": "zzzz"}, "commit", "not a commit sha"),
    ({"fetch": "--upload-pack=touch /tmp/x"}, "fetch", "not a valid ref name"),
    ({"branch": "main", "fetch": "refs/pull/1/head"}, "branch", "not both"),
    ({"trigger": {"source": {"type": "UI", "name": "github push"}}}, "trigger.source", "only its type"),
    ({"trigger": {"author": {"$where": "x", "a.b": "y"}}}, "trigger.author.$where", "unknown field"),
]


async def test_a_request_that_could_never_run_is_refused_and_one_at_the_limits_runs(queen: Cluster) -> None:
    pipeline = {"parameters": {f"P{i}": {"default": ""} for i in range(6)},
                "stages": [{"name": "test", "steps": [
                    {"run": 'test "${#P0}" -eq 65536 && test "${#P3}" -eq 62000 && echo "at $APIARY_BRANCH"'}]}]}
    await queen.request("POST", "/repos", {"name": "app", "pipeline": pipeline}, expect=201)
    for body, field, words in NEVER_RUNS:
        status, answer = await queen.request("POST", "/repos/app/jobs", body)
        assert (status, answer.get("field")) == (400, field) and words in answer["error"], (field, answer)
        assert "\0" not in answer["error"] and len(answer["error"]) < 400, answer
    assert (await queen.get("/repos/app/jobs"))["jobs"] == []
    # The most a job may be given reaches its commands: the caps are below what the kernel takes.
    await queen.add_drone("d1")
    near = {"P0": "v" * 65536, **{f"P{i}": "w" * 62000 for i in range(1, 4)}}
    job = await queen.wait_job((await queen.trigger("app", branch="release/2.0", parameters=near))["id"])
    assert job["status"] == "passed", job


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
