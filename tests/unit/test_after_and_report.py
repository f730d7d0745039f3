"""The after and report plugins' pure parts: config checks, the chain, branch filters, the document and
bulk answers. Real queens and a stand-in Elasticsearch: tests/e2e/test_after_and_report.py."""

from __future__ import annotations

import json

import pytest

from apiary.plugins import after, report
from apiary.plugins.api import ConfigProblem, check_config

# -- after: pure parts ------------------------------------------------------------------------

def test_after_config_is_checked_and_filled() -> None:
    assert check_config(after.config_schema, {"repos": ["a"]}, after) == {"repos": ["a"], "type": "TEST",
                                                                          "parameters": {}}
    for config, field in [({}, "repos"), ({"repos": []}, "repos"), ({"repos": ["a", 3]}, "repos[1]"),
                          ({"repos": ["a", " "]}, "repos[1]"), ({"repos": ["a"], "type": "BUILD"}, "type"),
                          ({"repos": ["a"], "branch": ""}, "branch"),
                          ({"repos": ["a"], "parameters": {"1X": "y"}}, "parameters.1X")]:
        with pytest.raises(ConfigProblem) as err:
            check_config(after.config_schema, config, after)
        assert err.value.field == field, config


def test_the_chain_grows_only_through_after_triggers_and_branches_filter() -> None:
    manual = {"repo": "a", "trigger": {"source": {"type": "API"}}}
    assert after.chain_of(manual) == ["a"]
    followed = {"repo": "b", "trigger": {"source": {"type": "plugin", "plugin": "after", "chain": ["a"]}}}
    assert after.chain_of(followed) == ["a", "b"]
    other = {"repo": "b", "trigger": {"source": {"type": "plugin", "plugin": "github", "chain": ["x"]}}}
    assert after.chain_of(other) == ["b"]

    job = {"repo": "a", "ref": {"branch": "release/2"}}
    assert after.watches({"repos": ["a"]}, job)
    assert after.watches({"repos": ["a"], "upstream_branch": "release/*"}, job)
    assert not after.watches({"repos": ["a"], "upstream_branch": "main"}, job)
    assert not after.watches({"repos": ["a"], "upstream_branch": "main"}, {"repo": "a", "ref": {"fetch": "pr/1"}})
    assert not after.watches({"repos": ["b"]}, job)


# -- report: pure parts ------------------------------------------------------------------------

JOB = {"_id": "01JOB", "repo": "app", "number": 7, "status": "passed", "type": "TEST", "ref": {"branch": "main"},
       "created": 1700000000.0, "started": 1700000001.5, "finished": 1700000004.0, "pipeline": {"stages": []},
       "plugin_keys": [], "trigger": {"type": "API"}, "usage": {"cpu_seconds": 0.1},
       "commands": {"2": {"num": 2, "command": "b"}, "10": {"num": 10, "command": "c"}, "1": {"num": 1, "command": "a"}}}


def test_the_document_is_the_job_for_a_dashboard() -> None:
    doc = report.document(JOB)
    assert doc["id"] == "01JOB" and "_id" not in doc and "pipeline" not in doc and "plugin_keys" not in doc
    assert [c["num"] for c in doc["commands"]] == [1, 2, 10]
    assert (doc["duration"], doc["wait"]) == (2.5, 1.5)
    assert doc["@timestamp"] == "2023-11-14T22:13:24.000+00:00"
    assert (doc["status"], doc["repo"], doc["number"], doc["usage"]) == ("passed", "app", 7, {"cpu_seconds": 0.1})
    action, document, end = report.bulk_body("ci", JOB).decode().split("\n")
    assert json.loads(action) == {"index": {"_index": "ci", "_id": "01JOB"}} and end == ""
    assert json.loads(document) == doc


def test_bulk_answers_are_read_for_refusals() -> None:
    assert report.bulk_problem(200, '{"errors": false, "items": []}') is None
    assert report.bulk_problem(200, "ok") is None
    assert report.bulk_problem(401, "no key") == "answered 401: no key"
    answer = {"errors": True, "items": [{"index": {"status": 400, "error": {
        "type": "mapper_parsing_exception", "reason": "failed to parse field [number]"}}}]}
    assert report.bulk_problem(200, json.dumps(answer)) == (
        "item refused (400): mapper_parsing_exception: failed to parse field [number]")
    assert report.endpoint_name("https://u:pw@es.example:9200/_bulk") == "https://es.example:9200/_bulk"


def test_report_config_is_checked() -> None:
    assert check_config(report.config_schema, {"url": "http://localhost:9200/_bulk"}, report) == {
        "url": "http://localhost:9200/_bulk", "index": "apiary-jobs", "auth_scheme": "ApiKey"}
    for config, field in [({}, "url"), ({"url": "ftp://x/_bulk"}, "url"), ({"url": "localhost:9200"}, "url"),
                          ({"url": "http://es/_bulk", "index": "Jobs"}, "index"),
                          ({"url": "http://es/_bulk", "auth_scheme": "Token"}, "auth_scheme")]:
        with pytest.raises(ConfigProblem) as err:
            check_config(report.config_schema, config, report)
        assert err.value.field == field, config
