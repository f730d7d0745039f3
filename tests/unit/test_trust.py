"""Secrets by trust, as tables: a job's kind from its trigger, and the secrets each kind gets. Real jobs
given (or not given) secrets: tests/e2e/test_trust.py."""

from __future__ import annotations

from typing import Any

import pytest

from apiary.queen.trust import DEFAULT_KINDS, given_secrets, job_kind

PLUGIN = {"type": "plugin", "plugin": "github"}


@pytest.mark.parametrize(("trigger", "kind"), [
    ({"type": "push", "source": PLUGIN}, "push"),
    ({"type": "tag", "source": PLUGIN}, "tag"),
    ({"type": "schedule", "source": {"type": "plugin", "plugin": "schedule"}}, "schedule"),
    ({"type": "pull_request", "fork": False, "source": PLUGIN}, "pull_request"),
    ({"type": "pull_request", "fork": True, "source": PLUGIN}, "fork"),
    ({"type": "pull_request", "source": PLUGIN}, "fork"),  # the forge did not say: untrusted
    ({"type": "merge_request", "fork": False, "source": PLUGIN}, "pull_request"),
    ({"type": "after", "source": {"type": "plugin", "plugin": "after"}}, "manual"),
    ({"type": "manual", "source": {"type": "UI"}}, "manual"),
    ({"type": "push", "source": {"type": "API"}}, "manual"),  # an API client cannot claim to be a push
    ({"type": "pull_request", "fork": False, "source": {"type": "API"}}, "manual"),
])
def test_a_jobs_kind_comes_from_what_triggered_it(trigger: dict[str, Any], kind: str) -> None:
    assert job_kind(trigger) == kind


SECRETS = [{"name": "DEPLOY_KEY", "kinds": list(DEFAULT_KINDS)}, {"name": "WEBHOOK_SECRET", "kinds": list(DEFAULT_KINDS)},
           {"name": "PR_TOKEN", "kinds": ["pull_request"]}, {"name": "FORK_OK", "kinds": ["fork", "push"]},
           {"name": "NOBODY", "kinds": []}]


@pytest.mark.parametrize(("kind", "pull_request_secrets", "given"), [
    ("push", False, ["DEPLOY_KEY", "FORK_OK"]),
    ("manual", False, ["DEPLOY_KEY"]),
    ("fork", False, ["FORK_OK"]),
    ("fork", True, ["FORK_OK"]),  # the repository setting never reaches forks
    ("pull_request", False, ["PR_TOKEN"]),
    ("pull_request", True, ["DEPLOY_KEY", "FORK_OK", "PR_TOKEN"]),
])
def test_which_secrets_a_job_gets(kind: str, pull_request_secrets: bool, given: list[str]) -> None:
    repo = {"pull_request_secrets": pull_request_secrets}
    assert given_secrets(kind, SECRETS, repo, queen_only={"WEBHOOK_SECRET"}) == given
