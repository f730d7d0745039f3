"""The REST API's OpenAPI 3.1 description, served at ``GET /api/v1/openapi.json``.

Written by hand beside the handlers in api.py: every route under /api/v1 with
its parameters, request body and responses, errors included (``{"error",
"field"}``, see errors.py). Request schemas say what the handlers accept (a job
request: apiary.core.jobrequest; a repository: repos.py); response schemas name
the fields clients rely on and allow more.
tests/test_openapi.py checks that the paths here are exactly the app's
/api/v1 routes, and runs schemathesis against a real queen with it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from apiary.core import __version__
from apiary.core.jobrequest import CLIENT_SOURCES, JOB_TYPES
from apiary.core.protocol import JobStatus
from apiary.queen.repos import REPO_NAME, SOURCES
from apiary.queen.strict_json import json_response
from apiary.queen.trust import DEFAULT_KINDS, KINDS

PATH = "/api/v1/openapi.json"
# Patterns as JSON Schema reads them (ECMA: no (?P...), same classes as ours).
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{description}"}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {_JSON: {"schema": schema}}}


def _param(name: str, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"} if not schema else {
        "name": name, "in": where, "required": where == "path", "schema": schema}


def _object(properties: dict[str, Any], required: tuple[str, ...] = (), closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


_STRING = {"type": "string"}
_NUMBER = {"type": "number"}
_STRINGS = {"type": "array", "items": _STRING}
_KINDS = {"type": "array", "items": {"enum": list(KINDS)}, "description": "kinds of job (default: "
          + ", ".join(DEFAULT_KINDS) + ")"}
_USERNAME = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"}
_PASSWORD = {"type": "string", "minLength": 8}
_STEPS = {"type": ["array", "null"], "items": {"oneOf": [_STRING, {"type": "object"}]}}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _STRING, "field": _STRING}, ("error",)),
    "Pipeline": {
        "description": "A pipeline as JSON (the same keys as .apiary.yml; see the README's Pipelines).",
        **_object({
            "stages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
            "env": {"type": "object"}, "parameters": {"type": "object"},
            "timeout": {"type": ["number", "string"]}, "output_timeout": {"type": ["number", "string"]},
            "parallel": {"type": "integer", "minimum": 1, "maximum": 64},
            "artifacts": _STRINGS, "plugins": {"type": "array"},
            "on_start": _STEPS, "on_success": _STEPS, "on_failure": _STEPS,
            "environment": _STEPS, "prepare": _STEPS, "cleanup": _STEPS,
            "hooks": {"type": "object"}, "phases": {"type": "object"},
            "concurrency": {"type": ["object", "string"], "description": "{group, cancel_in_progress}"},
            "cache": {"type": ["array", "object"], "description": "[{key, paths, restore_keys}]: pipeline caches"},
            "reports": {"type": "object", "description": "{junit: [glob]}: JUnit XML test reports in the workspace"},
        }, ("stages",), closed=True)},
    "RepoSettings": _object({
        "name": {"type": "string", "pattern": REPO_NAME.pattern,
                 "description": "required by POST /repos; for PUT, the name in the path"},
        "url": {"type": "string", "description": "git URL, without credentials"},
        "provider": _STRING,
        "default_branch": _STRING,
        "pipeline_source": {"enum": list(SOURCES)},
        "pipeline_file": _STRING,
        "pipeline": {"oneOf": [{"type": "string", "description": "YAML text"}, _ref("Pipeline")]},
        "auth": {"oneOf": [{"type": "null"}, _object({
            "type": {"enum": ["https", "ssh"]},
            "secret": {"type": "string", "pattern": _ENV_NAME},
            "username": _STRING}, ("type", "secret"), closed=True)]},
        "retention": {"oneOf": [{"type": "null"}, _object({
            "keep_jobs": {"type": "integer", "minimum": 1},
            "keep_days": {"type": "number", "minimum": 0.001}}, closed=True)]},
        "plugins": {"oneOf": [{"type": "null"}, {"type": "string", "description": "YAML text"}, {
            "type": "array", "items": {"oneOf": [_STRING, _object(
                {"name": _STRING, "config": {"type": ["object", "null"]}}, ("name",), closed=True)]}}]},
        "branches": {"oneOf": [{"type": "null"}, _object({
            "include": {"oneOf": [_STRING, _STRINGS]},
            "exclude": {"oneOf": [_STRING, _STRINGS]}}, closed=True)]},
        "pull_request_secrets": {"type": "boolean", "description": "same-repository pull requests get what "
                                                                   "pushes get (never forks)"},
        "deploy_tags": {"type": "boolean", "description": "a forge's tag push starts a deploying job (the "
                                                          "plugin's tag_type); default false: a TEST job"},
        "auto_cancel": {"type": "boolean", "description": "a newer push to a branch or pull request cancels "
                                                          "its older jobs still queued or running (default true)"},
        "debug_keep": {"type": "boolean", "description": "a failed job's workspace stays on its drone for a debug "
                                                         "shell (default false; a pipeline's debug: {keep: true} too)"},
    }, closed=True),
    "Repo": _object({
        "name": _STRING, "url": _STRING, "provider": _STRING, "default_branch": _STRING,
        "pipeline_source": {"enum": list(SOURCES)}, "pipeline_file": _STRING,
        "pipeline": {"type": ["string", "object", "null"]},
        "auth": {"type": ["object", "null"]}, "retention": {"type": "object"},
        "plugins": {"type": "array", "items": _object({"name": _STRING, "config": {"type": "object"}})},
        "branches": {"type": "object"}, "pull_request_secrets": {"type": "boolean"},
        "deploy_tags": {"type": "boolean"}, "auto_cancel": {"type": "boolean"}, "debug_keep": {"type": "boolean"},
        "created": _NUMBER,
        "updated": _NUMBER,
    }, ("name", "url", "pipeline_source")),
    "Trigger": _object({
        "source": {"oneOf": [{"enum": list(CLIENT_SOURCES)},
                             _object({"type": {"enum": list(CLIENT_SOURCES)}}, ("type",), closed=True)]},
        "type": _STRING,
        "author": {"oneOf": [_STRING, _object({k: {"type": "string", "maxLength": 256}
                                               for k in ("name", "email", "login")}, closed=True)]},
        "message": _STRING,
        "url": _STRING,
    }, closed=True),
    "TriggerJob": _object({
        "branch": _STRING, "commit": _STRING,
        "fetch": {"type": "string", "description": "a refspec such as refs/pull/7/merge"},
        "type": {"enum": list(JOB_TYPES)},
        "parameters": {"type": "object", "propertyNames": {"pattern": _ENV_NAME},
                       "description": "each value at most 64 KiB (no NUL), 256 KiB in all",
                       "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "trigger": _ref("Trigger"),
    }, closed=True),
    "Rerun": _object({"trigger": _ref("Trigger"), "from_failed": {
        "type": "boolean", "description": "reuse the stages that passed (and the job's artifacts); run the first failed "
                                          "stage and those after (409 when the job did not fail or cannot be so)"}},
                     closed=True),
    "Decision": _object({"stage": _STRING, "decision": {"enum": ["approve", "reject"]},  # apiary.core.approvals
                         "comment": {"type": "string", "maxLength": 1000}}, ("stage", "decision"), closed=True),
    "Session": _object({"user": _STRING, "role": {"enum": ["admin", "member"]},
                        "csrf": {"type": "string", "description": "send it as X-CSRF-Token with unsafe requests"}},
                       ("user", "role", "csrf")),
    "Job": _object({
        "id": _STRING, "number": {"type": "integer"}, "repo": _STRING,
        "status": {"enum": [s.value for s in JobStatus]}, "type": {"enum": list(JOB_TYPES)},
        "ref": {"type": "object"}, "parameters": {"type": "object", "additionalProperties": _STRING},
        "trigger": {"type": "object"}, "drone": {"type": ["string", "null"]},
        "created": _NUMBER, "started": _NUMBER, "finished": _NUMBER, "duration": _NUMBER,
        "commands": {"type": "array", "items": {"type": "object"}},
        "phases": {"type": "object"}, "usage": {"type": "object"}, "error": _STRING,
        "kind": {"enum": list(KINDS), "description": "how far its code is trusted (which secrets it gets)"},
        "secrets": {"type": "array", "items": _STRING, "description": "the names of the secrets it was given"},
        "triggered_by": _object({
            "kind": {"enum": ["user", "token", "setup", "rerun", "webhook", "schedule", "chain", "plugin"]},
            "name": {"type": "string", "description": "the user (user, token, rerun), the plugin (webhook, "
                                                      "plugin), the schedule, the upstream job's id (chain)"},
            "job": {"type": "string", "description": "rerun: the job it repeats"},
            "via": {"enum": ["session", "token"]}}, ("kind", "name")),
        "commit": _object({
            "message": {"type": "string", "description": "the whole message (its first line is the subject)"},
            "author": _object({"name": _STRING, "email": _STRING}), "at": _NUMBER,
            "source": {"enum": ["webhook", "repository", "checkout"]}},
            ("message", "source")),
        "links": _object({k: _STRING for k in ("commit", "branch", "pull_request")}),
        "estimate": _object({  # apiary.queen.estimate
            "expected_s": {**_NUMBER, "description": "its expected duration: the median of the last passing jobs of "
                                                     "the same stages"},
            "elapsed_s": {**_NUMBER, "description": "running: how long it has run"},
            "left_s": {**_NUMBER, "description": "running: expected less elapsed (0 once over); queued: starts_in_s "
                                                 "plus expected_s"},
            "based_on": {"type": "integer", "description": "passing jobs of its branch (else repository)"},
            "basis": {"enum": ["branch", "repository"]},
            "starts_in_s": {**_NUMBER, "description": "queued, when every slot of the pool is taken and every job "
                                                      "ahead has an estimate: seconds until it starts"},
            "ahead": {"type": "integer", "description": "with starts_in_s: jobs queued before it"}},
            ("expected_s", "based_on")),
        "conditions": {"type": "array", "description": "the verdict of each `when:` (apiary.core.conditions)",
                       "items": _object({"stage": _STRING, "step": {"type": ["integer", "null"]},
                                         "run": {"type": "boolean"}, "reason": _STRING})},
        # what when.changed compared the job's commit with
        "changes_base": _object({"commit": {"type": ["string", "null"]}, "since": _STRING, "why": _STRING,
                                 "job": _STRING}),
        "concurrency": _object({"group": _STRING, "cancel_in_progress": {"type": "boolean"}}),
        # the newer job that cancelled this one
        "superseded_by": _object({"id": _STRING, "number": {"type": "integer"}, "repo": _STRING}),
        # remote stages (apiary.core.spread): a spread cell's (or a shard's) job and the job it is part of
        "parent": _object({"id": _STRING, "number": {"type": "integer"},
                           "unit": {"type": "string", "description": "the cell (or shard) it runs"},
                           "wave": {"type": "integer", "description": "the parent's attempt that made it"}},
                          ("id", "number", "unit")),
        "children": {"type": "array", "description": "its child jobs, oldest first (a spread cell's, a shard's)",
                     "items": _object({"unit": _STRING, "job": _STRING, "number": {"type": "integer"},
                                       "status": {"enum": [s.value for s in JobStatus]},
                                       "wave": {"type": "integer"}}, ("unit", "job", "number", "status"))},
        "failed_child": _object({"unit": _STRING, "job": _STRING, "number": {"type": "integer"},
                                 "status": {"enum": ["failed", "cancelled", "errored"]}}, ("unit", "status")),
        "caches": {"type": "object", "description": "by the entry's index in `cache:` (apiary.core.caches.job_fields)",
                   "additionalProperties": _object({
                       "key": _STRING, "restore": {"enum": ["hit", "miss", "refused", "skipped"]},
                       "restored_key": _STRING, "scope": _STRING, "size": {"type": "integer"},
                       "save": {"enum": ["saved", "skipped"]}, "saved_size": {"type": "integer"},
                       "files": {"type": "integer"}, "note": _STRING})},
        "report": _ref("TestCounts"),  # its test report (apiary.queen.testreports)
        "shard_plans": {"type": "array", "items": _ref("ShardPlan")},  # its test shards (apiary.queen.shards)
    }, ("id", "repo", "status", "type", "ref", "commands")),
    # -- test shards (apiary.queen.shards; decisions: apiary.core.shards) --
    "ShardPlan": _object({
        "stage": {"type": "string", "description": "the sharded stage as written"},
        "count": {"type": "integer", "minimum": 1, "maximum": 64},
        "tests": {"type": "integer", "description": "names the tests command listed"},
        "known": {"type": "integer", "description": "of them with a duration in past reports"},
        "history_jobs": {"type": "integer", "description": "reported jobs read for durations"},
        "makespan": {"type": "number", "description": "planned seconds of the longest shard"},
        "even_makespan": {"type": "number", "description": "the same, the list split by count alone"},
        "unknown_seconds": {"type": "number", "description": "what a test without history is taken to last"},
        "shards": {"type": "array", "items": _object({
            "index": {"type": "integer", "minimum": 1}, "name": {"type": "string", "description": "its stage"},
            "tests": {"type": "integer"}, "seconds": {"type": "number", "description": "planned"},
            "known": {"type": "integer"},
            "job": {"type": ["string", "null"], "description": "its child job (GET /jobs/{job}/shards)"},
            "number": {"type": ["integer", "null"]}, "status": {"type": ["string", "null"]},
            "real": {"type": ["number", "null"], "description": "seconds its stage ran in its job, once ended"},
            "job_seconds": {"type": ["number", "null"], "description": "seconds its whole job ran, once ended"}},
            ("index", "tests", "seconds"))}},
        ("stage", "count", "tests", "shards")),
    # -- test reports (apiary.queen.testreports) --
    "TestCounts": _object({
        **{k: {"type": "integer", "minimum": 0} for k in ("tests", "passed", "failed", "errors", "skipped")},
        "stored": {"type": "integer", "minimum": 0, "description": "tests kept one by one (failed first)"},
        "listed": {"type": "object", "description": "the tests kept, by status",
                   "additionalProperties": {"type": "integer"}},
        "seconds": _NUMBER,
        "files": {"type": "array", "items": _object({"path": _STRING, "tests": {"type": "integer"},
                                                     "error": {"type": "string", "description": "why it was skipped"},
                                                     "number": {"type": "integer", "description": "a child job's file"}},
                                                    ("path",))},
        "jobs": {"type": "array", "description": "a parent's: each child job that reported (its counts add up here)",
                 "items": _object({"job": _STRING, "number": {"type": "integer"}, "unit": _STRING,
                                   "tests": {"type": "integer"}, "failed": {"type": "integer"},
                                   "errors": {"type": "integer"}})}}, ("tests", "passed", "failed", "errors", "skipped")),
    "TestHistory": _object({
        "passed": {"type": "integer"}, "failed": {"type": "integer", "description": "failed or errored"},
        "skipped": {"type": "integer"}, "flips": {"type": "integer", "description": "pass <-> fail changes"},
        "flaky": {"type": "boolean"}, "why": {"type": "string", "description": "why it is flaky, else ''"}},
        ("passed", "failed", "flaky")),
    "TestResult": _object({
        "test": {"type": "string", "description": "classname.name: its identity in the repository's history"},
        "name": _STRING, "classname": _STRING, "suite": _STRING,
        "status": {"enum": ["failed", "error", "skipped", "passed"]}, "seconds": _NUMBER,
        "message": _STRING, "text": {"type": "string", "description": "the failure's text (its end, cut)"},
        "job": _STRING, "number": {"type": ["integer", "null"]}, "commit": {"type": ["string", "null"]},
        "unit": {"type": "string", "description": "a parent's test: the child job's unit it ran in (a shard)"},
        "n": {"type": "integer"}, "history": _ref("TestHistory")}, ("test", "status")),
    "Event": _object({"seq": {"type": "integer"}, "type": _STRING, "job": _STRING}, ("seq", "type")),
    "Outcome": _object({  # apiary.core.outcome
        "status": {"enum": [s.value for s in JobStatus]}, "error": {"type": ["string", "null"]},
        "stages": {"type": "array", "items": _object({
            "name": _STRING, "needs": _STRINGS, "deploy": {"type": "boolean"},
            "status": {"enum": ["passed", "failed", "skipped", "cancelled", "running", "waiting", "not_run", "reused"]},
            "reason": {"type": ["string", "null"], "description": "why it was skipped or not run, or what it waits for"},
            "reused_from": {"type": ["object", "null"], "description": "reused: the job it passed in {job, number}"},
            "child": {**_object({"job": _STRING, "number": {"type": "integer"}, "status": _STRING}),
                      "description": "a remote stage (spread: true cell, shard): the child job it shows"},
            "children": {"type": "array", "items": _object({"job": _STRING, "number": {"type": "integer"},
                                                            "status": _STRING}),
                         "description": "a remote stage: every child job of its unit (several for shards)"},
            "started": {"type": ["number", "null"]}, "duration": {"type": ["number", "null"]},
            "commands": {"type": "array", "items": _object({
                "num": {"type": ["integer", "null"], "description": "null: a step that never ran"},
                "title": _STRING, "hook": {"type": ["string", "null"]},
                "status": {"enum": ["passed", "failed", "cancelled", "running", "waiting", "not_run", "skipped"],
                           "description": "waiting: a step its stage may still run; not_run: it never will; "
                                          "skipped: a `when:` left it out (its reason says why)"},
                "reason": {"type": "string", "description": "skipped: why"},
                "ignored": {"type": "boolean", "description": "failed, but its step ignores the exit code"},
                "exitCode": {"type": ["integer", "null"]}, "signal": {"type": ["string", "null"]},
                "shell_signal": {"type": ["string", "null"],
                                 "description": "the signal an exit code 128+N names (139: SIGSEGV), as a shell ends"},
                "duration": {"type": ["number", "null"]},
                # step retry (apiary.core.retry)
                "attempt": {"type": ["object", "null"], "description": "{attempt, of}: a step with a retry"},
                "retried": {"type": "boolean", "description": "a later attempt of its step ran (this one does not "
                                                              "decide)"},
                "flaky": {"type": "boolean", "description": "passed on attempt 2 or later"},
                "timed_out": {"type": "boolean", "description": "its step's own timeout stopped it (exit 124)"}},
                ("num", "title", "status"))},
            "flaky": {"type": "boolean", "description": "a step of it passed on a retry"},
            "matrix": {"type": ["object", "null"], "description": "a matrix cell: {group, values: {VAR: text}}"}},
            ("name", "needs", "status", "commands"))},
        "failure": {"oneOf": [{"type": "null"}, _object({
            "stage": {"type": ["string", "null"]}, "num": {"type": ["integer", "null"]},
            "title": {"type": ["string", "null"]}, "command": {"type": ["string", "null"]},
            "exitCode": {"type": ["integer", "null"]},
            "signal": {"type": ["string", "null"], "description": "SIGKILL, SIGTERM...: it was killed"},
            "shell_signal": {"type": ["string", "null"],
                             "description": "the signal its exit code 128+N names (139: SIGSEGV), as a shell ends"},
            "last_lines": {**_STRINGS, "description": "the command's last lines of output (masked)"},
            "anchor": {"type": ["string", "null"], "description": "cmd-N: its place on the job page"},
            "also": {"type": "array", "description": "the other commands that failed (parallel stages)",
                     "items": _object({"stage": {"type": ["string", "null"]}, "num": {"type": "integer"},
                                       "title": {"type": ["string", "null"]}, "anchor": {"type": "string"}})},
            "error": {"type": ["string", "null"]}}, ("stage", "num", "last_lines"))]},
        "ran_nothing": {"type": ["string", "null"], "description": "why a job that passed ran no stage (the "
                        "pipeline has no deploy stages for a DEPLOY job)"},
    }, ("status", "stages", "failure")),
    "Artifact": _object({"name": _STRING, "size": {"type": "integer"}, "parts": {"type": "integer"},
                         "url": _STRING}, ("name", "size", "url")),
    "Drone": _object({
        "id": _STRING, "host": _STRING, "capacity": {"type": "integer"}, "running": {"type": "integer"},
        "jobs": _STRINGS, "speed": _NUMBER, "plugins": _STRINGS, "installs_plugins": {"type": "boolean"},
        "version": {"type": ["integer", "string"]}, "joined": _NUMBER, "last_heartbeat": _NUMBER,
        "load": {"type": ["number", "null"]},
    }, ("id", "capacity", "running")),
    # Comments on jobs (apiary.queen.comments; rules: apiary.queen.comment_rules)
    "CommentText": _object({"text": {"type": "string", "minLength": 1, "maxLength": 10_000,
                                     "description": "markdown; no control characters but tab and newline, "
                                                    "no direction overrides"}},
                           ("text",), closed=True),
    "Comment": _object({
        "id": _STRING, "job": _STRING,
        "author": {"type": "string", "description": "the user who wrote it (the queen's owner, before users)"},
        "author_id": {"type": ["string", "null"], "description": "the author's user id, never reused (null: the "
                                                                 "queen's owner)"},
        "text": {"type": "string", "description": "as written (markdown)"},
        "html": {"type": "string", "description": "its rendering: no raw HTML, links to http, https and mailto "
                                                  "only, no images"},
        "created": _NUMBER, "edited": {"type": ["number", "null"], "description": "when it was last edited"},
    }, ("id", "job", "author", "text", "html", "created", "edited")),
    # Debug shells in failed jobs (apiary.queen.debugshells; rules: apiary.core.debug)
    "DebugSession": _object({
        "id": _STRING, "user": _STRING, "drone": _STRING, "opened": _NUMBER,
        "ended": {"type": ["number", "null"], "description": "null while it is open"},
        "duration": {"type": ["number", "null"], "description": "seconds it was open"},
        "how": {"enum": ["closed", "exited", "idle", "total", "drone gone", "window ended", "refused", "error", None]},
        "detail": _STRING}, ("id", "user", "opened", "ended", "how")),
    "DebugState": _object({
        "job": _STRING, "available": {"type": "boolean", "description": "whether the caller may open a shell now "
                                                                        "(on /ws: {op: debug, action: open, job})"},
        "why": {"type": ["string", "null"], "description": "why not: the role, the job's state, the kept workspace, "
                                                          "the drone, the cap"},
        "role": {"enum": ["admin", "member"], "description": "the role a shell needs ([queen] debug_role)"},
        "drone": {"type": ["string", "null"]}, "keep": {"type": "boolean", "description": "the pipeline's debug.keep"},
        "idle": _NUMBER, "total": _NUMBER,
        "kept_until": {"type": ["number", "null"], "description": "when the drone deletes the kept workspace "
                                                                 "(later while a shell is open)"},
        "open": {"type": "integer"}, "sessions": {"type": "array", "items": _ref("DebugSession")},
    }, ("job", "available", "why", "role", "keep", "idle", "total", "kept_until", "open", "sessions")),
    # Bisect across drones (apiary.queen.bisects; decisions: apiary.core.bisect)
    "BisectRequest": _object({
        "good": {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$", "description": "a commit that passed"},
        "bad": {"type": "string", "pattern": "^[0-9a-fA-F]{4,64}$", "description": "a later commit that fails"},
        "stage": {"type": ["string", "null"], "maxLength": 128,
                  "description": "bad means this stage failed (default: the job failed)"},
        "branch": {"type": "string", "description": "the branch the commits are on (default: the default branch)"},
        "parameters": {"type": "object", "additionalProperties": _STRING,
                       "description": "the parameters its jobs are given (default: the pipeline's defaults)"},
        "from_job": {"type": "string", "description": "instead of good, bad, branch, parameters: a failed job (bad: "
                                                      "its commit; its parameters; good: the newest passed job of its "
                                                      "branch at an ancestor of bad)"},
    }, closed=True),
    "BisectTry": _object({
        "index": {"type": "integer"}, "commit": _STRING, "round": {"type": "integer"},
        "job": {"type": "string", "description": "absent when no job could be made (skipped)"},
        "number": {"type": "integer"}, "status": {"type": "string", "description": "its job's status now"},
        "verdict": {"enum": ["good", "bad", "skip", "unneeded", "cancelled", None],
                    "description": "skip: the commit could not be tested; unneeded: cancelled once its commit left "
                                   "the range (good or bad with unneeded true: it ended all the same; not counted)"},
        "unneeded": {"type": "boolean"}, "reason": {"type": ["string", "null"]},
        "subject": {"type": "string"}}, ("index", "commit", "verdict")),
    "Bisect": _object({
        "id": _STRING, "repo": _STRING, "number": {"type": ["integer", "null"], "description": "null while reading"},
        "branch": _STRING, "good": _STRING,
        "bad": _STRING, "stage": {"type": ["string", "null"]},
        "status": {"enum": ["running", "found", "range", "unreproduced", "failed", "cancelled"],
                   "description": "unreproduced: the bad commit did not fail as asked in this bisect's own job "
                                  "(error says why); nothing is blamed"},
        "parameters": {"type": "object", "additionalProperties": _STRING},
        "error": {"type": ["string", "null"]}, "created": _NUMBER, "finished": {"type": ["number", "null"]},
        "by": {"type": "object"}, "from_job": {"type": ["string", "null"]},
        "cancelled_by": {"type": "object", "description": "who cancelled it (as by)"},
        "left_out": {"type": "array", "items": {"type": "object"},
                     "description": "[{stage, why}]: the stages its jobs never run (deploy stages, approval gates "
                                    "and what needs them), as the pipeline at bad has them"},
        "commits": {"type": "integer", "description": "commits searched (first-parent history after good, to bad)"},
        "left": {"type": "integer", "description": "commits the first bad one may still be among"},
        "tries": {"type": "array", "items": _ref("BisectTry")}, "rounds": {"type": "integer"},
        "result": {"type": ["object", "null"], "description": "first_bad: {commit, subject, message, author, email, "
                   "at, job, number} or null (a range: see candidates), candidates: [the same], last_good: sha, "
                   "good_assumed: last_good is the good end given, not run; unreproduced: {reproduced: false, try}"},
        "url": {"type": "string", "description": "its page"}, "version": {"type": "integer"},
        "reading": {"type": "boolean", "description": "its history is still being read (commits: 0 until then)"},
    }, ("id", "repo", "number", "status", "good", "bad", "tries")),
}

PARAMETERS: dict[str, Any] = {
    "repo": {"name": "repo", "in": "path", "required": True, "description": "the repository's name",
             "schema": {"type": "string", "pattern": REPO_NAME.pattern}},
    "job": {"name": "job", "in": "path", "required": True, "description": "the job's id", "schema": _STRING},
    "secret": {"name": "name", "in": "path", "required": True, "description": "the secret's name",
               "schema": {"type": "string", "pattern": _ENV_NAME}},
    "limit": {"name": "limit", "in": "query", "description": "at most this many jobs (default 50)",
              "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
    "before": {"name": "before", "in": "query", "description": "only jobs older than this job id (paging)",
               "schema": _STRING},
    "number": {"name": "number", "in": "query", "description": "only the job with this number in the repository "
                                                            "(its REPO#N, as apiary ls and the dashboard show it)",
               "schema": {"type": "integer", "minimum": 1, "maximum": 2**53}},
    "branch": {"name": "branch", "in": "query", "schema": _STRING,
               "description": "only jobs of this branch: built from it, of this fetched ref (refs/pull/7/head), "
                              "or pull/merge requests whose head (source) or base (target) branch it is"},
}

RESPONSES: dict[str, Any] = {
    "BadRequest": _json(_ref("Error"), "bad input; `field` names it"),
    "NotFound": _json(_ref("Error"), "no such repository, job, secret or artifact"),
    "Conflict": _json(_ref("Error"), "the repository exists, or the job has ended"),
    "TooLarge": _json(_ref("Error"), "a body over 1 MiB"),
    "SignIn": _json(_ref("Error"), "sign in first (once the queen has users): a session or an API token"),
    "Forbidden": _json(_ref("Error"), "this role may not do this, a session's X-CSRF-Token is missing, or the "
                                      "request comes from another site's page (Origin, Sec-Fetch-Site)"),
    "Unavailable": _json(_ref("Error"), "the store is away (restarting); try again shortly"),
    "NotJson": _json(_ref("Error"), "a request that changes something sends its body as application/json"),
    "WrongHost": _json(_ref("Error"), "a queen on loopback answers to loopback names and public_url's host only"),
    "TooMany": _json(_ref("Error"), "too many failed attempts, or passwords being checked: see Retry-After"),
    "Slow": _json(_ref("Error"), "the body did not arrive in time"),
}

_BAD, _MISSING, _CONFLICT = _error("BadRequest"), _error("NotFound"), _error("Conflict")
_REPO, _JOB = _param("repo"), _param("job")
_COMMENT = {"name": "comment", "in": "path", "required": True, "description": "the comment's id", "schema": _STRING}
_JOBS = _object({"jobs": {"type": "array", "items": _ref("Job")}}, ("jobs",))
_BISECT = {"name": "bisect", "in": "path", "required": True, "description": "the bisect's id", "schema": _STRING}


def _op(summary: str, responses: dict[str, Any], *, parameters: list[Any] | None = None,
        body: dict[str, Any] | None = None, store: bool = True) -> dict[str, Any]:
    """An operation; any may answer 401 and 403 (queen/auth.py), 415 and 421 (queen/web_guard.py), one that
    reads a body 408 and 413, one that uses the store 503."""
    responses = {**responses, "401": _error("SignIn"), "403": _error("Forbidden"), "415": _error("NotJson"),
                 "421": _error("WrongHost"),
                 **({"408": _error("Slow"), "413": _error("TooLarge")} if body else {}),
                 **({"503": _error("Unavailable")} if store else {})}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    return op


PATHS: dict[str, Any] = {
    "/api/v1": {"get": _op("The API's version and entry points", {
        "200": _json(_object({"apiary": _STRING, "links": _STRINGS}, ("apiary", "links")), "the index")},
        store=False)},
    PATH: {"get": _op("This description", {"200": _json({"type": "object"}, "OpenAPI 3.1")}, store=False)},
    "/api/v1/repos": {
        "get": _op("The repositories", {
            "200": _json(_object({"repos": {"type": "array", "items": _ref("Repo")}}, ("repos",)), "all")}),
        "post": _op("Register a repository (`name` required)", {
            "201": _json(_ref("Repo"), "registered"), "400": _BAD, "409": _CONFLICT},
            body=_body(_ref("RepoSettings"))),
    },
    "/api/v1/repos/{repo}": {
        "get": _op("A repository's settings", {"200": _json(_ref("Repo"), "its settings"), "404": _MISSING},
                   parameters=[_REPO]),
        "put": _op("Create or replace a repository's settings", {
            "200": _json(_ref("Repo"), "replaced"), "201": _json(_ref("Repo"), "created"),
            "400": _BAD, "404": _MISSING}, parameters=[_REPO], body=_body(_ref("RepoSettings"))),
    },
    "/api/v1/repos/{repo}/secrets": {
        "get": _op("The names of a repository's secrets (never their values)", {
            "200": _json(_object({"secrets": {"type": "array", "items": _object(
                {"name": _STRING, "kinds": _KINDS, "updated": _NUMBER}, ("name", "kinds"))}}, ("secrets",)),
                "names"), "404": _MISSING},
            parameters=[_REPO]),
    },
    "/api/v1/repos/{repo}/secrets/{name}": {
        "put": _op("Set a secret's value and/or the kinds of job that get it", {
            "200": _json(_object({"name": _STRING, "set": {"const": True}, "kinds": _KINDS}, ("name", "set")),
                         "set"), "400": _BAD, "404": _MISSING}, parameters=[_REPO, _param("secret")],
            body=_body(_object({"value": _STRING, "kinds": _KINDS}, closed=True))),
        "delete": _op("Delete a secret", {
            "200": _json(_object({"name": _STRING, "deleted": {"const": True}}, ("name", "deleted")), "deleted"),
            "400": _BAD, "404": _MISSING}, parameters=[_REPO, _param("secret")]),
    },
    "/api/v1/repos/{repo}/caches": {
        "get": _op("The repository's pipeline caches, most recently used first", {
            "200": _json(_object({"caches": {"type": "array", "items": _object({
                "id": _STRING, "scope": {"type": "string", "description": "a branch, or pull:<ref>"}, "key": _STRING,
                "size": {"type": "integer", "description": "bytes of tar.zst"}, "created": _NUMBER, "used": _NUMBER,
                "job": _STRING}, ("id", "scope", "key", "size"))},
                "size": {"type": "integer"}, "max_bytes": {"type": "integer"}}, ("caches", "size")), "the list"),
            "404": _MISSING}, parameters=[_REPO]),
        "delete": _op("Delete the repository's caches (of a scope, of a key): admins", {
            "200": _json(_object({"deleted": {"type": "integer"}}, ("deleted",)), "how many"),
            "400": _BAD, "404": _MISSING},
            parameters=[_REPO, _param("scope", "query", type="string"), _param("key", "query", type="string")]),
    },
    "/api/v1/repos/{repo}/jobs": {
        "get": _op("The repository's jobs, newest first", {"200": _json(_JOBS, "a page"), "400": _BAD,
                                                           "404": _MISSING},
                   parameters=[_REPO, _param("number"), _param("branch"), _param("limit"), _param("before")]),
        "post": _op("Trigger a job", {
            "201": _json(_ref("Job"), "queued"), "400": _BAD, "404": _MISSING},
            parameters=[_REPO], body=_body(_ref("TriggerJob"))),
    },
    "/api/v1/jobs": {
        "get": _op("Jobs of every repository, newest first", {"200": _json(_JOBS, "a page"), "400": _BAD},
                   parameters=[_param("branch"), _param("limit"), _param("before")]),
    },
    "/api/v1/jobs/{job}": {
        "get": _op("One job: status, ref, trigger, who triggered it, its commit, drone, timestamps, commands, "
                   "phases, usage; running or queued, an estimate from the last passing jobs", {
            "200": _json(_ref("Job"), "the job"), "404": _MISSING}, parameters=[_JOB]),
    },
    "/api/v1/jobs/{job}/events": {
        "get": _op("The job's events after `after`, in order", {
            "200": _json(_object({
                "job": _STRING, "status": _STRING, "events": {"type": "array", "items": _ref("Event")},
                "last": {"type": "integer"}, "more": {"type": "boolean"}}, ("job", "events", "last", "more")),
                "a page"), "400": _BAD, "404": _MISSING},
            parameters=[_JOB, _param("after", "query", type="integer", minimum=0, maximum=2**62),
                        _param("limit", "query", type="integer", minimum=1, maximum=20_000)]),
    },
    "/api/v1/jobs/{job}/outcome": {
        "get": _op("Why the job ended as it did: each stage's state (skipped, not run, cancelled...) and "
                   "duration, and the command that failed it with its exit code or signal and last lines", {
                       "200": _json(_ref("Outcome"), "the outcome"), "404": _MISSING}, parameters=[_JOB]),
    },
    "/api/v1/jobs/{job}/search": {
        "get": _op("Lines of the job's command output that show `q` (case-insensitive; as the job page shows "
                   "them, escape sequences aside): the command's number, the line's 0-based index in its output "
                   "as the job page counts lines, its stream and text", {
                       "200": _json(_object({
                           "matches": {"type": "array", "items": _object({
                               "num": {"type": "integer"}, "stream": {"enum": ["stdout", "stderr"]},
                               "line": {"type": "integer", "minimum": 0},
                               "text": {"type": "string", "description": "the line as the job page shows it "
                                        "(no colours, titles, link addresses), at most 2000 characters"}},
                               ("num", "stream", "line", "text"))},
                           "truncated": {"type": "boolean", "description": "more lines match than `limit`"}},
                           ("matches", "truncated")), "the lines found"),
                       "400": _BAD, "404": _MISSING},
                   parameters=[_JOB, {**_param("q", "query", type="string", minLength=1, maxLength=200),
                                      "required": True},
                               _param("limit", "query", type="integer", minimum=1, maximum=1000)]),
    },
    "/api/v1/jobs/{job}/cancel": {
        "post": _op("Cancel a job: at once if queued, else its drone kills its processes", {
            "202": _json(_object({"id": _STRING, "status": _STRING}, ("id", "status")), "cancelling"),
            "404": _MISSING, "409": _CONFLICT}, parameters=[_JOB]),
    },
    "/api/v1/jobs/{job}/approvals": {
        "post": _op("Approve or reject the approval gate a waiting job is at (the gate's role may; others get 403)", {
            "200": _json(_object({"id": _STRING, "status": _STRING, "approvals": {"type": "array", "items": {
                "type": "object"}}}, ("id", "status", "approvals")), "decided: queued again (approved) or failed"),
            "400": _BAD, "404": _MISSING, "409": _CONFLICT}, parameters=[_JOB], body=_body(_ref("Decision"))),
    },
    "/api/v1/jobs/{job}/comments": {
        "get": _op("The job's newest comments (?limit, 50, at most 500, older than the comment ?before), oldest "
                   "first; older: whether more remain (ask again with before = the first one's id)", {
            "200": _json(_object({"comments": {"type": "array", "items": _ref("Comment")},
                                  "older": {"type": "boolean"}}, ("comments", "older")),
                         "its comments"), "400": _BAD, "404": _MISSING},
            parameters=[_JOB, _param("limit", "query", type="integer", minimum=1, maximum=500),
                        _param("before", "query", type="string")]),
        "post": _op("Comment on the job (members and admins; 409 past 1,000 comments on it, 429 past 10 comments "
                    "or edits a minute by one person)", {
            "201": _json(_ref("Comment"), "written"), "400": _BAD, "404": _MISSING, "409": _CONFLICT,
            "429": _error("TooMany")}, parameters=[_JOB], body=_body(_ref("CommentText"))),
    },
    "/api/v1/jobs/{job}/debug": {
        "get": _op("Whether you may open a debug shell in the job (a failed job whose pipeline keeps its workspace, "
                   "debug: {keep: true}), and the shells it has had; the shell itself is on the WebSocket /ws", {
            "200": _json(_ref("DebugState"), "its debug shells"), "404": _MISSING}, parameters=[_JOB]),
    },
    "/api/v1/jobs/{job}/comments/{comment}": {
        "patch": _op("Edit your comment (its author only; marked edited)", {
            "200": _json(_ref("Comment"), "edited"), "400": _BAD, "404": _MISSING, "429": _error("TooMany")},
            parameters=[_JOB, _COMMENT], body=_body(_ref("CommentText"))),
        "delete": _op("Delete a comment (its author, or an admin)", {
            "200": _json(_object({"id": _STRING, "deleted": {"const": True}}, ("id", "deleted")), "deleted"),
            "404": _MISSING}, parameters=[_JOB, _COMMENT]),
    },
    "/api/v1/jobs/{job}/rerun": {
        "post": _op("A new job with the same ref, type and parameters", {
            "201": _json(_ref("Job"), "queued"), "400": _BAD, "404": _MISSING, "409": _CONFLICT},
            parameters=[_JOB], body=_body(_ref("Rerun"), required=False)),
    },
    "/api/v1/jobs/{job}/tests": {
        "get": _op("The job's tests, failed and errored first, then skipped, then passed; each with its history", {
            "200": _json(_object({"job": _STRING, "report": {"oneOf": [{"type": "null"}, _ref("TestCounts")]},
                                  "total": {"type": "integer"}, "offset": {"type": "integer"},
                                  "limit": {"type": "integer"},
                                  "tests": {"type": "array", "items": _ref("TestResult")}},
                                 ("job", "report", "total", "tests")), "a page of tests"),
            "400": _BAD, "404": _MISSING},
            parameters=[_JOB, _param("status", "query", enum=["failed", "error", "skipped", "passed"]),
                        _param("offset", "query", type="integer", minimum=0),
                        _param("limit", "query", type="integer", minimum=1, maximum=500)]),
    },
    "/api/v1/jobs/{job}/shards": {
        "get": _op("The job's test shards: each sharded stage's plan, each shard's planned and real seconds", {
            "200": _json(_object({"job": _STRING, "stages": {"type": "array", "items": _ref("ShardPlan")},
                                  "shard_of": _object({  # a shard's own job: whose shard it is
                                      "job": _STRING, "number": {"type": "integer"}, "stage": _STRING,
                                      "shard": {"type": "integer"}, "count": {"type": "integer"}})},
                                 ("job", "stages")), "its shards (none: an empty list)"),
            "404": _MISSING}, parameters=[_JOB]),
    },
    "/api/v1/repos/{repo}/tests/history": {
        "get": _op("A test's results over its branch's last 20 jobs with a report, and whether it is flaky", {
            "200": _json({**_object({"repo": _STRING, "branch": {"type": ["string", "null"]}, "test": _STRING,
                                     "window": {"type": "integer"},
                                     "runs": {"type": "array", "items": _ref("TestResult")}},
                                    ("repo", "test", "runs")),
                          "allOf": [_ref("TestHistory")]}, "its history, newest first"),
            "400": _BAD, "404": _MISSING},
            parameters=[_REPO, {**_param("test", "query", type="string", minLength=1), "required": True},
                        _param("branch", "query", type="string")]),
    },
    "/api/v1/jobs/{job}/artifacts": {
        "get": _op("The job's artifacts", {
            "200": _json(_object({"artifacts": {"type": "array", "items": _ref("Artifact")}}, ("artifacts",)),
                         "the list"), "404": _MISSING}, parameters=[_JOB]),
    },
    "/api/v1/jobs/{job}/artifacts/{name}": {
        "get": _op("Download an artifact", {
            "200": {"description": "the file", "content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}, "404": _MISSING},
            parameters=[_JOB, _param("name", type="string", minLength=1)]),
    },
    # -- accounts (queen/accounts.py) --
    "/api/v1/setup": {
        "post": _op("An admin while the queen has none, with the setup token from its data_dir/setup-token", {
            "200": _json(_ref("Session"), "signed in"), "400": _BAD, "409": _CONFLICT, "429": _error("TooMany")},
            body=_body(_object({"token": _STRING, "username": _USERNAME, "password": _PASSWORD},
                               ("token", "username", "password"), closed=True))),
    },
    "/api/v1/session": {
        "post": _op("Sign in: a session cookie and its CSRF token", {
            "200": _json(_ref("Session"), "signed in"), "400": _BAD, "429": _error("TooMany")},
            body=_body(_object({"username": _STRING, "password": _STRING}, ("username", "password"),
                               closed=True))),
        "delete": _op("Sign out", {"200": _json(_object({"signed_out": {"const": True}}, ("signed_out",)),
                                                "signed out")}),
    },
    "/api/v1/me": {
        "get": _op("Who is asking", {"200": _json(_object({
            "user": {"type": ["string", "null"]}, "role": {"enum": ["admin", "member"]}, "via": _STRING,
            "setup": {"type": "boolean"}}, ("user",)), "the user, or null")}),
    },
    "/api/v1/users": {
        "get": _op("The users (admins only)", {"200": _json(_object({"users": {"type": "array", "items": _object(
            {"name": _STRING, "role": {"enum": ["admin", "member"]}, "created": _NUMBER}, ("name", "role"))}},
            ("users",)), "all")}),
        "post": _op("Add a user (admins only)", {
            "201": _json(_object({"name": _STRING, "role": {"enum": ["admin", "member"]}}, ("name", "role")),
                         "added"), "400": _BAD, "409": _CONFLICT, "429": _error("TooMany")},
            body=_body(_object({"username": _USERNAME, "password": _PASSWORD, "role": {"enum": ["admin", "member"]}},
                               ("username", "password"), closed=True))),
    },
    "/api/v1/users/{name}": {
        "delete": _op("Delete a user (admins only; not oneself)", {
            "200": _json(_object({"name": _STRING, "deleted": {"const": True}}, ("name", "deleted")), "deleted"),
            "400": _BAD, "404": _MISSING, "409": _CONFLICT}, parameters=[_param("name", type="string")]),
    },
    "/api/v1/tokens": {
        "get": _op("Your API tokens (never their secrets)", {
            "200": _json(_object({"tokens": {"type": "array", "items": _object(
                {"id": _STRING, "name": _STRING, "created": _NUMBER}, ("id", "name"))}}, ("tokens",)), "yours"),
            "400": _BAD}),
        "post": _op("A new API token, shown once", {
            "201": _json(_object({"id": _STRING, "name": _STRING, "token": _STRING, "note": _STRING},
                                 ("id", "name", "token")), "made"), "400": _BAD},
            body=_body(_object({"name": _STRING, "user": {**_STRING, "description": "whose token: refused (403) "
                                                          "unless the request is signed in as this user"}},
                               closed=True), required=False)),
    },
    "/api/v1/tokens/{id}": {
        "delete": _op("Delete one of your API tokens", {
            "200": _json(_object({"id": _STRING, "deleted": {"const": True}}, ("id", "deleted")), "deleted"),
            "400": _BAD, "404": _MISSING}, parameters=[_param("id", type="string")]),
    },
    "/api/v1/drones": {
        "get": _op("The drones in the pool", {
            "200": _json(_object({"drones": {"type": "array", "items": _ref("Drone")},
                                  "endpoint": {**_STRING, "description": "the ZeroMQ endpoint drones connect to, "
                                               "tcp://HOST:PORT, as bound"}},
                                 ("drones", "endpoint")), "the pool")},
            store=False),
    },
    "/api/v1/drones/join-tokens": {
        "post": _op("A one-time token with which a drone joins (admins; the queen's drones use keys)", {
            "201": _json(_object({"token": _STRING, "id": {"type": ["string", "null"]}, "expires": _NUMBER,
                                  "run": _STRING}, ("token", "expires", "run")), "made"),
            "400": _BAD, "409": _CONFLICT},
            body=_body(_object({"id": _STRING, "expires_in": {"type": "number", "minimum": 60}}, closed=True),
                       required=False)),
    },
    "/api/v1/drones/join": {
        "post": _op("A drone's public key authorized with a join token (public; the token is the proof)", {
            "201": _json(_object({"id": _STRING, "queen_key": _STRING, "authorized": _STRING},
                                 ("id", "queen_key")), "joined"),
            "400": _BAD, "409": _CONFLICT, "429": _error("TooMany")},
            body=_body(_object({"token": _STRING, "id": _STRING, "key": _STRING}, ("token", "id", "key"),
                               closed=True))),
    },
    "/api/v1/repos/{repo}/bisects": {
        "get": _op("The repository's bisects, newest first", {
            "200": _json(_object({"bisects": {"type": "array", "items": _ref("Bisect")}}, ("bisects",)), "its bisects"),
            "400": _BAD, "404": _MISSING}, parameters=[_REPO, {"$ref": "#/components/parameters/limit"}, {
                "name": "number", "in": "query", "description": "only bisect #N of the repository",
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**53}}]),
        "post": _op("Find the first bad commit between good and bad with jobs on free drones (a k-way search; "
                    "409 while one of the repository's bisects runs)", {
            "201": _json(_ref("Bisect"), "started"), "400": _BAD, "404": _MISSING, "409": _CONFLICT},
            parameters=[_REPO], body=_body(_ref("BisectRequest"))),
    },
    "/api/v1/bisects/{bisect}": {
        "get": _op("A bisect: its tries with their verdicts, its progress, its answer", {
            "200": _json(_ref("Bisect"), "the bisect"), "404": _MISSING}, parameters=[_BISECT]),
    },
    "/api/v1/bisects/{bisect}/cancel": {
        "post": _op("Cancel a running bisect and its jobs", {
            "200": _json(_object({"id": _STRING, "status": _STRING}, ("id", "status")), "cancelled"),
            "404": _MISSING, "409": _CONFLICT}, parameters=[_BISECT]),
    },
    "/api/v1/prune": {
        "post": _op("Apply every repository's retention policy now", {
            "200": _json(_object({"deleted": {"type": "object", "additionalProperties": {"type": "integer"}}},
                                 ("deleted",)), "how many jobs each repository lost")}),
    },
}


def description() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Apiary", "version": __version__,
                 "description": "The queen's REST API. Errors are {\"error\": message, \"field\": name}."},
        "paths": PATHS,
        # Open until the queen has users (on loopback); then a session (POST /api/v1/session) or a token.
        "security": [{}, {"token": []}, {"session": []}],
        "components": {"schemas": SCHEMAS, "parameters": PARAMETERS, "responses": RESPONSES, "securitySchemes": {
            "token": {"type": "http", "scheme": "bearer", "description": "an API token, apiary_…"},
            "session": {"type": "apiKey", "in": "cookie", "name": "apiary_session"}}},
    }


async def serve(request: web.Request) -> web.Response:
    return json_response(description())
