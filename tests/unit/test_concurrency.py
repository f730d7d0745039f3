"""Concurrency groups and auto-cancel (apiary.core.concurrency): compiling, filling in, the pure decisions."""

import pytest

from apiary.core.concurrency import compile_concurrency, group_key, group_name, holds_group, may_dispatch, superseded
from apiary.core.conditions import ConditionError
from apiary.core.pipeline import PipelineError, load_pipeline


def test_group_is_filled_in():
    compiled = compile_concurrency({"group": "deploy-{{ branch }}-{{parameters.ENV}}-{{ repo }}-{{ type }}-{{ event }}",
                                    "cancel_in_progress": True}, ["ENV"])
    assert compiled["cancel_in_progress"] is True
    assert group_name(compiled["group"], branch="main", repo="app", job_type="DEPLOY", event="push",
                      parameters={"ENV": "prod"}) == "deploy-main-prod-app-DEPLOY-push"
    assert compile_concurrency("one") == {"group": "one", "cancel_in_progress": False}


@pytest.mark.parametrize("value, path, problem", [
    ({"group": "x-{{ sha }}"}, "concurrency.group", "unknown {{ sha }}"),
    ({"group": "x-{{ parameters.NOPE }}"}, "concurrency.group", "unknown {{ parameters.NOPE }}"),
    ({"group": "x-{{ branch"}, "concurrency.group", "a '{{' without its '}}'"),
    ({"group": ""}, "concurrency.group", "must be a one-line string"),
    ({"group": "g", "cancel_in_progress": "yes"}, "concurrency.cancel_in_progress", "must be true or false"),
    ({"group": "g", "limit": 2}, "concurrency.limit", "unknown key 'limit'"),
    (["g"], "concurrency", "must be a mapping"),
])
def test_bad_concurrency(value, path, problem):
    with pytest.raises(ConditionError) as caught:
        compile_concurrency(value, ["ENV"])
    assert caught.value.path == path and problem in caught.value.problem


def test_bad_concurrency_in_a_pipeline_names_file_and_line():
    with pytest.raises(PipelineError) as caught:
        load_pipeline("stages: [{name: a, steps: [x]}]\nconcurrency:\n  group: \"{{ nope }}\"\n")
    assert str(caught.value).startswith(".apiary.yml, line 3: concurrency.group: unknown {{ nope }}")


@pytest.mark.parametrize("group, busy, may", [
    (None, {"a"}, True),
    ("a", set(), True),
    ("a", {"a"}, False),
    ("a", {"b"}, True),
])
def test_may_dispatch(group, busy, may):
    assert may_dispatch(group, busy) is may


_SPREAD = {"stages": [{"name": "deploy (eu)", "remote": {"kind": "spread", "unit": "deploy (eu)"}}]}
_GATE = {"stages": [{"name": "deploy", "approval": {"role": "admin", "timeout": 60}}]}


@pytest.mark.parametrize("status, pipeline, holds", [
    ("queued", _SPREAD, False),
    ("dispatched", {}, True),
    ("running", _GATE, True),
    ("waiting", _SPREAD, True),  # waiting for its child jobs: its deploy runs in them
    ("waiting", _GATE, False),  # at an approval gate: nobody may decide for days
    ("passed", _SPREAD, False),
    ("cancelled", _SPREAD, False),
])
def test_holds_group(status, pipeline, holds):
    assert holds_group({"status": status, "pipeline": pipeline}) is holds


def job(id, kind="push", type="push", branch="main", fetch=None, group=None, cancel=False, repo="app",
        job_type="TEST", status="queued"):
    ref = {"fetch": fetch} if fetch else {"branch": branch}
    out = {"_id": id, "repo": repo, "kind": kind, "trigger": {"type": type}, "ref": ref, "type": job_type,
           "status": status}
    if group:
        out["concurrency"] = {"group": group, "cancel_in_progress": cancel}
    return out


@pytest.mark.parametrize("new, older, auto, cancelled", [
    (job("3"), [job("1"), job("2", branch="dev")], True, ["1"]),
    (job("3"), [job("1")], False, []),
    (job("3"), [job("4")], True, []),  # a newer job is never superseded
    (job("3", kind="tag", type="tag"), [job("1", kind="tag", type="tag")], True, []),
    (job("3", kind="manual", type="manual"), [job("1", kind="manual", type="manual")], True, []),
    (job("3", kind="schedule", type="schedule"), [job("1", kind="schedule", type="schedule")], True, []),
    (job("3", type="rerun"), [job("1")], True, []),  # a re-run supersedes nothing
    (job("3"), [job("1", kind="manual", type="manual")], True, []),  # a push leaves a manual job alone
    (job("3", repo="other"), [job("1")], True, []),
    (job("3", kind="pull_request", type="pull_request", fetch="refs/pull/7/head"),
     [job("1", kind="pull_request", type="pull_request", fetch="refs/pull/7/head"),
      job("2", kind="fork", type="pull_request", fetch="refs/pull/8/head")], True, ["1"]),
    (job("3", kind="fork", type="merge_request", fetch="refs/merge-requests/2/head"),
     [job("1", kind="fork", type="merge_request", fetch="refs/merge-requests/2/head")], True, ["1"]),
    (job("3", kind="manual", type="manual", group="deploy", cancel=True),
     [job("1", kind="manual", type="manual", group="deploy"), job("2", group="other")], False, ["1"]),
    (job("3"), [job("1", status="running")], True, ["1"]),
    # A deploy on a drone is not cut off by a push; one still queued is superseded like any other.
    (job("3"), [job("1", job_type="TEST_DEPLOY", status="running"), job("2", job_type="DEPLOY")], True, ["2"]),
    (job("3", group="prod", cancel=True), [job("1", job_type="DEPLOY", status="running", group="prod")], True,
     ["1"]),
    (job("3", kind="manual", type="manual", group="deploy", cancel=False),
     [job("1", kind="manual", type="manual", group="deploy")], True, []),
    # Another repository's job, or a fork's request, naming the group cancels nothing of it.
    (job("3", group="prod", cancel=True, repo="other"), [job("1", job_type="DEPLOY", status="running", group="prod")],
     True, []),
    (job("3", kind="fork", type="pull_request", fetch="refs/pull/9/head", group="prod", cancel=True),
     [job("1", job_type="DEPLOY", status="running", group="prod"),
      job("2", kind="fork", type="pull_request", fetch="refs/pull/9/head", group="prod")], False, ["2"]),
    # A fork's request job is in a group of its own: the repository's cancel does not reach it either.
    (job("3", group="prod", cancel=True),
     [job("1", kind="fork", type="pull_request", fetch="refs/pull/9/head", group="prod")], False, []),
])
def test_superseded(new, older, auto, cancelled):
    assert superseded(new, older, auto) == cancelled


PR9 = {"kind": "fork", "type": "pull_request", "fetch": "refs/pull/9/head"}


@pytest.mark.parametrize("a, b, same", [
    # One repository's jobs of a group hold one another, whatever made them.
    (job("1", group="deploy-main"), job("2", kind="manual", type="manual", group="deploy-main"), True),
    (job("1", group="deploy-main"), job("2", group="deploy-dev"), False),
    # Another repository naming the same group is in another group: it neither holds nor waits for this one.
    (job("1", group="deploy-main"), job("2", group="deploy-main", repo="other"), False),
    # A fork's request job is in its request's own group: apart from the repository's, and from other requests'.
    (job("1", group="deploy-main"), job("2", group="deploy-main", **PR9), False),
    (job("1", group="deploy-main", **PR9), job("2", group="deploy-main", **PR9), True),
    (job("1", group="deploy-main", **PR9), job("2", group="deploy-main", kind="fork", type="pull_request",
                                               fetch="refs/pull/10/head"), False),
    # A request from the repository itself is the repository's.
    (job("1", group="deploy-main"), job("2", group="deploy-main", kind="pull_request", type="pull_request",
                                        fetch="refs/pull/7/head"), True),
    # A repository's group naming a fork's key is still the repository's (its id has no "/" nor NUL).
    (job("1", group="\0refs/pull/9/head\0deploy"), job("2", group="deploy", **PR9), False),
])
def test_group_key(a, b, same):
    assert (group_key(a) == group_key(b)) is same


def test_group_key_shapes():
    assert group_key(job("1")) is None  # in no group
    assert group_key(job("1", group="deploy-main")) == "app/deploy-main"
    assert group_key(job("1", group="deploy-main", **PR9)) == "app\0refs/pull/9/head\0deploy-main"
    assert group_key({"_id": "J", "repo": "app", "kind": "fork", "ref": {}, "concurrency": {"group": "g"}}) \
        == "app\0job J\0g"  # a fork's job without a fetch ref: a group of its own alone
