"""The OpenAPI description: served, and no request schemathesis makes gets a 5xx; what the store cannot keep is
refused. The description against the routes, and what a document can hold: tests/unit/test_openapi.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apiary.queen import openapi
from tests.cluster import Cluster
from tests.unit.test_openapi import _routes

# Examples per operation and generation mode (positive, negative), with generated path
# parameters and again with existing ones: about 1000 requests, some 25 s.
EXAMPLES = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PIPELINE = {"stages": [{"name": "test", "steps": ["true"]}]}
FEWER = {("POST", "/api/v1/users"): 5}  # each user costs an argon2 hash, a third of a second
ACCOUNTS = ("/api/v1/setup", "/api/v1/session", "/api/v1/me", "/api/v1/users", "/api/v1/tokens")


async def test_the_queen_serves_its_description(queen: Cluster) -> None:
    spec = await queen.get("/openapi.json")
    assert spec["openapi"].startswith("3.1") and spec["paths"] == openapi.description()["paths"]
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]


def _fuzz(base: str, fixed: dict[str, str]) -> dict[str, Any]:
    """Every operation, positive and negative data, with generated and with existing path parameters."""
    schema = schemathesis.openapi.from_url(base + openapi.PATH)
    figures: dict[str, Any] = {"operations": set(), "examples": 0, "statuses": {}, "nothing to negate": 0}
    session = requests.Session()
    # Accounts last, and adding a user last of all: once the queen has users, the rest answer 401.
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=lambda op: (
        op.path.startswith(ACCOUNTS), (op.method.upper(), op.path) == ("POST", "/api/v1/users")))
    for operation in operations:
        figures["operations"].add((operation.method.lower(), operation.path))
        params = [p.name for p in operation.path_parameters]
        variants = [None] + ([{p: fixed[p] for p in params if p in fixed}] if any(p in fixed for p in params) else [])
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            for path_parameters in variants:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
                examples = FEWER.get((operation.method.upper(), operation.path), EXAMPLES)

                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate, Phase.shrink],
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case: schemathesis.Case) -> None:
                    response = case.call_and_validate(base_url=base, session=session, checks=CHECKS, timeout=10)
                    figures["examples"] += 1
                    figures["statuses"][response.status_code] = figures["statuses"].get(response.status_code, 0) + 1

                try:
                    run()
                except Unsatisfiable:  # nothing to make invalid: no query, no body, path given
                    assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
                    figures["nothing to negate"] += 1
    return figures


async def test_schemathesis_finds_no_server_error(queen: Cluster) -> None:
    await queen.request("POST", "/repos", {"name": "app", "pipeline": PIPELINE}, expect=201)
    await queen.request("PUT", "/repos/app/secrets/TOKEN", {"value": "s3cret"}, expect=200)
    job = await queen.trigger("app")
    base = queen.api.removesuffix("/api/v1")
    started = time.monotonic()
    figures = await asyncio.to_thread(_fuzz, base, {"repo": "app", "job": job["id"], "name": "TOKEN"})
    print(f"\nschemathesis: {len(figures['operations'])} operations, {figures['examples']} requests in "
          f"{time.monotonic() - started:.1f} s; statuses {dict(sorted(figures['statuses'].items()))}; "
          f"{figures['nothing to negate']} runs with nothing to make invalid")
    # Every route but the description itself, which from_url leaves out.
    assert figures["operations"] == _routes() - {("get", openapi.PATH)}
    assert figures["examples"] >= 500 and not any(status >= 500 for status in figures["statuses"])


# -- the server errors found (by schemathesis and by hand), each now a 400 naming the field ------------

PLAIN = '"pipeline": {"stages": [{"name": "t", "steps": ["true"]}]}'
YAML_PLUGIN = ('{"name": "%s", "pipeline_source": "queen", '
               '"pipeline": "stages: [{name: t, steps: [x]}]\\nplugins: [{name: nope, config: {%s}}]"}')
LAUGHS = "[{name: after, config: {repos: [x], parameters: {A: &a [x,x,x,x,x,x,x,x,x], " + ", ".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]" for a, b in zip("abcdefg", "bcdefgh")) + "}}}]"
BAD_BODIES = [  # (method, path, body, extra headers, field, words)
    ("POST", "/repos", '{"name": "r", "url": "https://x/r.git", "retention": {"keep_jobs": 1' + "0" * 29 + "}}", {},
     "retention.keep_jobs", "does not fit in 64 bits"),
    ("POST", "/repos", '{"name": "r", "url": "https://x/r.git", "retention": {"keep_days": NaN}}', {},
     "body", "NaN is not a JSON number"),
    ("POST", "/repos", '{"name": "r", "url": "https://x/r.git", "retention": {"keep_days": 1e400}}', {},
     "retention.keep_days", "too large"),
    ("POST", "/repos", '{"name": "r", "url": "https://x/r.git", "retention": {"keep_jobs": 1' + "0" * 5000 + "}}",
     {}, "body", "not valid JSON"),
    ("POST", "/repos", '{"name": "r", "url": "https://x/\\ud800"}', {}, "url", "unpaired surrogate"),
    ("POST", "/repos", '{"name": "r", "pipeline": {"stages": [{"name": "t", "steps": ["\\udc00"]}]}}', {},
     "pipeline.stages[0].steps[0]", "unpaired surrogate"),
    ("POST", "/repos", '{"name": "r", "pipeline": ' + "[" * 50_000 + "]" * 50_000 + "}", {}, "body", "nested"),
    ("POST", "/repos", YAML_PLUGIN % ("r", "x: 100000000000000000000000000"), {},
     "pipeline.plugins[0].config.x", "does not fit in 64 bits"),
    ("POST", "/repos", YAML_PLUGIN % ("r", "d: 2020-01-01"), {}, "pipeline.plugins[0].config.d", "not date"),
    ("POST", "/repos", YAML_PLUGIN % ("r", "1: 2"), {}, "pipeline.plugins[0].config", "the key 1 is not a name"),
    # A number the store cannot hold, in a plugin's settings (its job parameters are text as written: see
    # tests/unit/test_plugin_settings.py).
    ("POST", "/repos", '{"name": "r", ' + PLAIN + ', "plugins": "[{name: after, config: {repos: [x], '
     'x: 100000000000000000000000}}]"}', {}, "plugins[0].config.x", "64 bits"),
    ("POST", "/repos", '{"name": "r", ' + PLAIN + ', "plugins": "' + LAUGHS + '"}', {}, "plugins", "more than"),
    ("POST", "/repos", '{"name": "r"}', {"Content-Type": "application/json; charset=nonsense"}, "url", "required"),
    ("POST", "/repos", "xx", {"Content-Encoding": "gzip"}, "body", "cannot be read"),
    ("PUT", "/repos/app/secrets/A", '{"value": "\\ud800"}', {}, "value", "unpaired surrogate"),
    ("POST", "/repos/app/jobs", '{"branch": "\\ud800"}', {}, "branch", "unpaired surrogate"),
    ("POST", "/repos/app/jobs", '{"trigger": {"message": "\\udfff"}}', {}, "trigger.message", "surrogate"),
    ("POST", "/repos/app/jobs", '{"trigger": {"author": {"a\\u0000b": "x"}}}', {}, "trigger.author", "NUL"),
    ("POST", "/repos/app/jobs", '{"parameters": {"A": 1e400}}', {}, "parameters.A", "too large"),
]


async def test_what_the_store_cannot_keep_is_refused_naming_the_field(queen: Cluster) -> None:
    await queen.request("POST", "/repos", {"name": "app", "pipeline": PIPELINE}, expect=201)
    assert queen.http is not None
    for method, path, body, headers, field, words in BAD_BODIES:
        async with queen.http.request(method, queen.api + path, data=body.encode(),
                                      headers={"Content-Type": "application/json", **headers}) as resp:
            answer = await resp.json(content_type=None)
        assert (resp.status, answer.get("field")) == (400, field), (path, body[:100], answer)
        assert words in answer["error"], (body[:100], answer)
    assert [r["name"] for r in (await queen.get("/repos"))["repos"]] == ["app"]
    assert (await queen.get("/repos/app/jobs"))["jobs"] == []
    assert (await queen.get("/repos/app/secrets"))["secrets"] == []
    assert queen.queen is not None and not re.search(r"(GET|POST|PUT) \S+ failed", queen.queen.stderr.read_text())


async def test_a_signed_webhook_the_store_cannot_keep_is_a_400(queen: Cluster) -> None:
    await queen.request("POST", "/repos", {"name": "gh", "url": "https://github.com/a/b.git", "pipeline": PIPELINE,
                                           "plugins": [{"name": "github"}]}, expect=201)
    await queen.request("PUT", "/repos/gh/secrets/WEBHOOK_SECRET", {"value": "hook-s3cret"}, expect=200)
    push = '{"ref": "refs/heads/main", "after": "%s", "head_commit": {"author": {"name": "\\ud800"}}}' % ("1" * 40)
    assert queen.http is not None
    for body, headers in [(push, {}), ("[" * 100_000, {}), ("xx", {"Content-Encoding": "gzip"})]:
        data = body.encode()
        signature = "sha256=" + hmac.new(b"hook-s3cret", data, hashlib.sha256).hexdigest()
        async with queen.http.post(queen.api.removesuffix("/api/v1") + "/hooks/github/gh", data=data, headers={
                "X-GitHub-Event": "push", "X-Hub-Signature-256": signature, **headers}) as resp:
            text = await resp.text()
        assert resp.status == 400 and text.startswith("bad payload"), (body[:60], resp.status, text)
    assert (await queen.get("/repos/gh/jobs"))["jobs"] == []
