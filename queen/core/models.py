"""The documents Apiary keeps and passes around, typed: a job and what it was asked with (its trigger
and ref), the compiled pipeline it runs, a repository's settings and a stored event.

One TypedDict each, every field the code reads or writes, units named. They type the plain dicts
that go to and from the store and JSON; nothing changes at run time. The wire messages are
apiary.core.messages'. (No `from __future__ import annotations` here: TypedDict reads NotRequired
from evaluated annotations.)

Units: times are seconds since 1970 (float), durations seconds, sizes bytes.
"""

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

# -- what a job is asked with -----------------------------------------------------------


class Ref(TypedDict):
    """What a job checks out, as stored and sent: a branch or a ref to fetch, maybe pinned to a commit.

    apiary.core.refs.parse_ref checks one and makes a refs.Ref of it (what git fetches).
    """

    branch: NotRequired[str]  # a branch name (main, release/1); absent when `fetch` is given
    fetch: NotRequired[str]  # a ref or refspec to fetch instead (refs/pull/7/merge, refs/tags/v1)
    id: NotRequired[str]  # the commit sha: given, or the one the pipeline was read at


class TriggerSource(TypedDict):
    """Who asked for the job; a plugin adds details of its own (the schedule and its due time,
    the job `after` followed), which the job keeps."""

    type: str  # UI (the dashboard), API (a client, the CLI) or plugin
    plugin: NotRequired[str]  # the plugin's name, when type is plugin


class Trigger(TypedDict):
    """Why a job exists, as the job page shows it. Made by apiary.core.jobrequest.job_request."""

    type: str  # push, tag, pull_request, merge_request, schedule, after, rerun; manual or a client's label
    author: dict[str, str]  # any of name, email, username, login
    message: str  # a commit's message, "schedule: every 1h"...; may be ""
    url: str  # an http(s) address the job page links to, or ""
    timestamp: float  # when it was asked: seconds since 1970
    source: TriggerSource
    fork: NotRequired[bool]  # a pull or merge request's: False only when it comes from the repository itself
    head_branch: NotRequired[str]  # a pull or merge request's source branch (in the fork, if it is from one)
    base_branch: NotRequired[str]  # a pull or merge request's target branch


class JobRequest(TypedDict):
    """A request for a job, checked (apiary.core.jobrequest.job_request): what create_job makes a job of."""

    ref: Ref
    type: str  # a JobType value: TEST, DEPLOY, TEST_DEPLOY
    parameters: dict[str, str]  # as given; the pipeline's defaults are added when the job is made
    trigger: Trigger


class TriggerBody(TypedDict, total=False):
    """``trigger`` in a request for a job over the API (the dashboard's form, `apiary trigger`)."""

    source: str | dict[str, Any]  # UI, API or plugin, or {"type": one of them, ...}; default API
    type: str  # a label; default manual
    author: str | dict[str, str]  # a name, or {name, email, ...}
    message: str
    url: str  # http(s) only


class JobBody(TypedDict, total=False):
    """The body of ``POST /api/v1/repos/{name}/jobs``: every field may be left out."""

    branch: str  # default: the repository's default_branch
    commit: str  # pin the job to this commit (a sha)
    fetch: str  # a ref to fetch instead of a branch (refs/pull/7/merge)
    type: str  # a JobType value; default TEST
    parameters: Mapping[str, str | int | float | bool]  # NAME: value; numbers and true/false become strings
    trigger: TriggerBody


# -- the compiled pipeline (apiary.core.pipeline) ------------------------------------------------


class Step(TypedDict):
    run: str  # a shell script
    title: str  # one line, at most MAX_TITLE (80) characters: the script's first line unless given
    ignore_exit_code: bool
    merge_output: NotRequired[bool]  # one pipe for stdout and stderr: their exact order, stored as stdout
    when: NotRequired[dict[str, Any]]  # runs only if this holds (apiary.core.conditions)
    timeout: NotRequired[float]  # seconds: the step's own; stopped then, it ends TIMED_OUT (apiary.core.retry)
    retry: NotRequired[dict[str, Any]]  # {attempts: 2..10, when: ["exit 1", "exit any", "timeout"]} (core/retry.py)


class Stage(TypedDict):
    name: str
    needs: list[str]  # names of stages that must pass first
    deploy: bool  # a deploy stage: runs after every test stage passed (DEPLOY, TEST_DEPLOY jobs)
    env: dict[str, str]
    steps: list[Step]  # at least one
    hooks: dict[str, list[Step]]  # on_start, on_success, on_failure: each a list, maybe empty
    when: NotRequired[dict[str, Any]]  # runs only if this holds (apiary.core.conditions)
    approval: NotRequired[dict[str, Any]]  # {role, timeout: s}: runs once approved (apiary.core.approvals)
    matrix: NotRequired[dict[str, Any]]  # a matrix cell: {group: the stage as written, values: {VAR: text}}
    shards: NotRequired[dict[str, Any]]  # {count, tests}: split over drones by past durations (apiary.core.shards)


class Parameter(TypedDict):
    required: bool
    default: str | None  # None: no default (a required parameter has none)
    description: str


class PluginUse(TypedDict):
    """A plugin a pipeline names; a drone that runs the job must have it (or install `pip`)."""

    name: str  # its entry point's name
    pip: str | None  # a pip requirement; None: the drone has the plugin or installs `name`
    config: dict[str, Any]  # checked against the plugin's schema


class Pipeline(TypedDict):
    """What `.apiary.yml` compiles to; the queen stores it on the job and sends it in ``queue:new``."""

    env: dict[str, str]
    parameters: dict[str, Parameter]
    timeout: float | None  # seconds the job may take; None: the drone's limit
    output_timeout: float | None  # seconds a command may stay silent; None: the drone's limit
    parallel: int  # stages at once, 1..MAX_PARALLEL
    artifacts: list[str]  # globs in the workspace
    hooks: dict[str, list[Step]]  # on_start, on_success, on_failure
    phases: dict[str, list[Step]]  # environment, prepare, cleanup
    stages: list[Stage]  # may be empty when plugins bring the commands
    plugins: list[PluginUse]
    concurrency: NotRequired[dict[str, Any]]  # {group (a template), cancel_in_progress} (apiary.core.concurrency)
    cache: NotRequired[list[dict[str, Any]]]  # [{key (a template), paths, restore_keys}] (apiary.core.caches)
    reports: NotRequired[dict[str, list[str]]]  # {junit: [glob]}: test reports read after the stages (core/reports.py)
    debug: NotRequired[dict[str, Any]]  # {keep, idle, total}: a failed job's workspace kept for a shell (core/debug.py)


# -- repositories -------------------------------------------------------------------------


class RepoAuth(TypedDict):
    type: str  # https (a token) or ssh (a private key)
    secret: str  # the name of the repository secret holding it
    username: NotRequired[str]  # https only


class Retention(TypedDict, total=False):
    keep_jobs: int
    keep_days: float  # days: 0.5 is twelve hours


class PluginSetting(TypedDict):
    """A queen-side plugin a repository uses (webhooks, schedules, reactions)."""

    name: str
    config: dict[str, Any]  # checked against the plugin's schema


class Repository(TypedDict):
    """A repository's settings as stored (``_id`` = its name); apiary.queen.repos checks them."""

    _id: str  # letters, digits, '.', '_', '-'
    url: str  # where drones (and the queen, for .apiary.yml) fetch the code; may be "" with a stored pipeline
    provider: str  # git, github, gitlab...
    default_branch: str
    pipeline_source: str  # repo: read at the job's commit; queen: the one stored here
    pipeline_file: str  # the file read from the repository (.apiary.yml)
    pipeline: str | Pipeline | None  # stored: YAML text as written, or compiled from JSON; None when read
    auth: RepoAuth | None
    retention: Retention
    plugins: list[PluginSetting]
    branches: dict[str, list[str]]  # include, exclude: shell-style patterns (release/*); exclude wins
    pull_request_secrets: bool  # same-repository pull requests get the secrets pushes get
    deploy_tags: NotRequired[bool]  # a forge's tag push starts a deploying job (default: a TEST job)
    auto_cancel: NotRequired[bool]  # a newer push or pull request job cancels the older ones (default true)
    debug_keep: NotRequired[bool]  # a failed job's workspace kept for a debug shell (apiary.core.debug; default false)
    created: float  # seconds since 1970
    updated: float


# -- jobs -----------------------------------------------------------------------------------


class Usage(TypedDict):
    peak_rss: int  # bytes
    cpu_seconds: float


class Command(TypedDict, total=False):
    """One command of a job (``commands.<num>``), from its ``job:cmd:start`` and ``job:cmd:done``."""

    num: int  # from 1, across the job's attempts
    command: str  # as shown (masked)
    title: str
    stage: str
    phase: str
    hook: str
    started: float  # seconds since 1970
    exitCode: int  # negative: killed by that signal
    duration: float  # seconds
    usage: Usage
    retry: dict[str, int]  # {attempt, of}: an attempt of a step with a retry (apiary.core.retry)
    timedOut: bool  # the step's own timeout stopped it


class PhaseRecord(TypedDict, total=False):
    """``phases.<name>``: a phase's state (environment, prepare, cleanup), a test or deploy phase's code."""

    state: str  # started, passed, failed, skipped
    code: int  # the test or deploy phase's exit code


class AttemptRecord(TypedDict):
    """``history.<attempt>``: an attempt that ended without a result of the job's own (apiary.core.jobstate)."""

    attempt: int
    drone: str | None
    dispatched: float | None  # seconds since 1970
    started: float | None
    ended: float
    reason: str


class Job(TypedDict):
    """A job as stored (``_id`` = a ULID, so ``_id`` order is trigger order). Made by
    apiary.queen.jobs.create_job; its status, attempts, drone and times change only as
    apiary.core.jobstate decides; what its events add is apiary.queen.lifecycle's."""

    _id: str
    number: int  # per repository: 1, 2, 3...
    repo: str  # the repository's name
    repo_url: str
    provider: str
    ref: Ref  # with the commit (`id`) when the pipeline was read from the repository
    type: str  # TEST, DEPLOY, TEST_DEPLOY
    parameters: dict[str, str]  # given, then the pipeline's defaults
    trigger: Trigger
    # Who or what asked, as the queen knows it: {kind, name, ...} (apiary.core.context.triggered_by)
    triggered_by: NotRequired[Mapping[str, Any]]
    # Its commit's message, author, time, and where they came from (apiary.core.context.CommitFacts)
    commit: NotRequired[Mapping[str, Any]]
    kind: str  # how far its code is trusted (apiary.queen.trust): push, tag, manual, schedule, pull_request, fork
    secrets: list[str]  # the names of the secrets it is given (never their values)
    pipeline: Pipeline  # (left out of the store's job lists)
    plugin_keys: list[str]  # what a drone must have to take it
    status: str  # a JobStatus value
    attempts: int  # dispatches so far: 0 while first queued
    drone: str | None  # the current attempt's drone
    created: float  # seconds since 1970
    dispatched: NotRequired[float | None]  # the current attempt's
    started: NotRequired[float | None]  # the current attempt's
    finished: NotRequired[float]
    tested: NotRequired[float]  # the test phase ended
    deployed: NotRequired[float]  # the deploy phase ended
    error: NotRequired[str]  # why it errored (or "cancelled")
    usage: NotRequired[Usage]  # the whole job's
    commands: dict[str, Command]  # by number ("1", "2"...)
    phases: dict[str, PhaseRecord]
    history: NotRequired[dict[str, AttemptRecord]]  # by attempt number ("1"...)
    plugins: NotRequired[dict[str, dict[str, Any]]]  # figures plugins report (test counts), by plugin
    rerun_of: NotRequired[str]  # the job it repeats
    resume: NotRequired[dict]  # a partial run: the stages it reuses and whose artifacts (apiary.core.partial)
    delivery: NotRequired[str]  # plugin/repository/id of the webhook delivery that queued it (unique)
    # `when:` verdicts: [{stage, step (from 0) | None, run, reason}] (apiary.core.conditions.decide)
    conditions: NotRequired[list[dict[str, Any]]]
    # What `when.changed` compared with: {commit (sha) | None, since (for people), why (no base), job?}
    changes_base: NotRequired[dict[str, Any]]
    concurrency: NotRequired[dict[str, Any]]  # {group (filled in), cancel_in_progress}
    superseded_by: NotRequired[dict[str, Any]]  # {id, number, repo} of the newer job that cancelled it
    # Its pipeline caches by index in `cache:`: {key, restore, restored_key, scope, size, save, saved_size, files,
    # note} (apiary.core.caches.job_fields)
    caches: NotRequired[dict[str, dict[str, Any]]]
    # The test report's counts {tests, passed, failed, errors, skipped, seconds, stored} and files read
    # [{path, tests} | {path, error}]; its tests are in the store's ``tests`` (apiary.queen.testreports)
    report: NotRequired[dict[str, Any]]


class Event(TypedDict):
    """A drone's event of a job as stored: the message's body (apiary.core.messages) without its ``id``,
    plus where it belongs. Output (``job:cmd:stdout``...) carries ``text``; each type its own fields."""

    _id: NotRequired[str]  # "<job>:<seq>" in the store; the API and the pages see events without it
    job: str
    seq: int  # 1, 2, 3... per job, across its attempts
    attempt: int
    type: str  # the message type: job:started, job:cmd:stdout, job:done...
    at: float  # when the queen stored it: seconds since 1970
    text: NotRequired[str]  # output: whole UTF-8, masked
