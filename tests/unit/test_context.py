"""A job's context: who triggered it (from what the queen knows), its commit's facts, web links."""

from __future__ import annotations

from typing import Any

import pytest

from apiary.core.context import (
    branch_url,
    checkout_facts,
    commit_facts,
    commit_url,
    describe_trigger,
    links,
    parse_commit_object,
    repo_web_url,
    triggered_by,
    view,
)
from apiary.core.protocol import Msg
from apiary.drone.checkout import shown_commit
from apiary.queen.lifecycle import job_update

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("url", "web"), [
    ("https://github.com/ada/engine.git", "https://github.com/ada/engine"),
    ("https://github.com/ada/engine", "https://github.com/ada/engine"),
    ("https://github.com/ada/engine/", "https://github.com/ada/engine"),
    ("https://x-access-token:ghp_secret@github.com/ada/engine.git", "https://github.com/ada/engine"),
    ("git@github.com:ada/engine.git", "https://github.com/ada/engine"),
    ("github.com:ada/engine", "https://github.com/ada/engine"),
    ("ssh://git@gitlab.example.com:2222/group/sub/app.git", "https://gitlab.example.com/group/sub/app"),
    ("https://gitea.example.org:3000/ops/tools.git", "https://gitea.example.org:3000/ops/tools"),
    ("http://git.lan/team/app.git", "http://git.lan/team/app"),
    ("https://GitHub.com/Ada/Engine.git", "https://github.com/Ada/Engine"),
    ("file:///srv/git/app.git", ""),
    ("/srv/git/app.git", ""),
    ("http://127.0.0.1:8080/project.git", ""),  # one part: no owner/repo
    ("https://github.com/ada/engine?x=<script>", "https://github.com/ada/engine"),
    ("https://github.com/ada/en gine", ""),
    ("", ""),
    (None, ""),
    ("javascript:alert(1)//x/y", ""),
])
def test_the_web_page_of_a_repository_from_its_clone_url(url: str | None, web: str) -> None:
    assert repo_web_url(url) == web


@pytest.mark.parametrize(("url", "sha", "provider", "link"), [
    ("git@github.com:ada/engine.git", SHA, "github", f"https://github.com/ada/engine/commit/{SHA}"),
    ("https://gitea.example.org/ops/tools", SHA, "git", f"https://gitea.example.org/ops/tools/commit/{SHA}"),
    ("https://gitlab.com/g/app.git", SHA, "git", f"https://gitlab.com/g/app/-/commit/{SHA}"),
    ("https://code.example.com/g/app.git", SHA, "gitlab", f"https://code.example.com/g/app/-/commit/{SHA}"),
    ("https://github.com/ada/engine", "", "github", ""),
    ("https://github.com/ada/engine", "main", "github", ""),  # not a sha
    ("file:///srv/app.git", SHA, "git", ""),
])
def test_a_commit_links_to_its_page_when_the_repository_has_one(url: str, sha: str, provider: str,
                                                               link: str) -> None:
    assert commit_url(url, sha, provider) == link


@pytest.mark.parametrize(("url", "branch", "provider", "link"), [
    ("https://github.com/ada/engine.git", "release/1", "github", "https://github.com/ada/engine/tree/release/1"),
    ("https://gitlab.com/g/app", "main", "gitlab", "https://gitlab.com/g/app/-/tree/main"),
    ("https://gitea.example.org/ops/tools", "main", "git", ""),  # a forge we cannot tell: no link
    ("https://github.com/ada/engine", "", "github", ""),
])
def test_a_branch_links_to_its_page_on_a_forge_we_know(url: str, branch: str, provider: str, link: str) -> None:
    assert branch_url(url, branch, provider) == link


@pytest.mark.parametrize(("identity", "kwargs", "expected"), [
    ({"user": "ada", "via": "session"}, {}, {"kind": "user", "name": "ada"}),
    ({"user": "bob", "via": "token"}, {}, {"kind": "token", "name": "bob"}),
    (None, {}, {"kind": "setup", "name": ""}),
    ({"user": "ada", "via": "session"}, {"rerun_of": "J1"}, {"kind": "rerun", "name": "ada", "job": "J1",
                                                             "via": "session"}),
    (None, {"rerun_of": "J1"}, {"kind": "rerun", "name": "", "job": "J1"}),
    # A plugin's: the queen knows whether a webhook is running, and the plugin's name, whatever it reports.
    ({"user": "ada", "via": "session"}, {"plugin": "github", "webhook": True,
                                         "trigger": {"type": "schedule", "source": {"schedule": "every 1h"}}},
     {"kind": "webhook", "name": "github"}),
    (None, {"plugin": "schedule", "trigger": {"type": "schedule", "source": {"schedule": "every 1h"}}},
     {"kind": "schedule", "name": "every 1h"}),
    (None, {"plugin": "after", "trigger": {"type": "after", "source": {"job": "UP1", "repo": "lib"}}},
     {"kind": "chain", "name": "UP1"}),
    (None, {"plugin": "mine", "trigger": {"type": "push"}}, {"kind": "plugin", "name": "mine"}),
])
def test_who_triggered_a_job_is_what_the_queen_knows(identity: Any, kwargs: dict[str, Any],
                                                     expected: dict[str, str]) -> None:
    assert triggered_by(identity, **kwargs) == expected


@pytest.mark.parametrize(("by", "text"), [
    ({"kind": "user", "name": "ada"}, "ada"),
    ({"kind": "token", "name": "bob"}, "bob (API token)"),
    ({"kind": "webhook", "name": "github"}, "webhook github"),
    ({"kind": "schedule", "name": "every 1h"}, "schedule every 1h"),
    ({"kind": "setup", "name": ""}, "nobody signed in (queen in setup)"),
    (None, ""),
])
def test_who_triggered_it_in_words(by: Any, text: str) -> None:
    assert describe_trigger(by) == text


def test_a_push_payload_gives_the_commit_a_pull_request_does_not() -> None:
    push = {"type": "push", "message": "Fix the parser\n\nIt lost a line.", "timestamp": 1700000000.0,
            "author": {"name": "Ada", "email": "ada@example.com"}, "source": {"type": "plugin", "plugin": "github"}}
    assert commit_facts(push) == {"message": "Fix the parser\n\nIt lost a line.", "at": 1700000000.0,
                                  "author": {"name": "Ada", "email": "ada@example.com"}, "source": "webhook"}
    read = {"message": "Head commit", "author": "Bob", "email": "bob@example.com", "at": 1.0}
    pr = {"type": "pull_request", "message": "Add a feature", "source": {"type": "plugin", "plugin": "github"}}
    assert commit_facts(pr, read) == {"message": "Head commit", "author": {"name": "Bob", "email": "bob@example.com"},
                                      "at": 1.0, "source": "repository"}
    # An API client's message is its label, not the commit's.
    client = {"type": "manual", "message": "please", "source": {"type": "API"}}
    assert commit_facts(client) is None
    assert commit_facts(client, read)["source"] == "repository"  # type: ignore[index]
    assert commit_facts(push)["message"] == push["message"]  # type: ignore[index]
    assert len(commit_facts({**push, "message": "x" * 10_000})["message"]) == 4096  # type: ignore[index]


def test_a_commit_object_as_git_prints_it() -> None:
    text = ("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent " + SHA + "\n"
            "author Ada Lovelace <ada@example.com> 1700000000 +0100\n"
            "committer Bob <bob@example.com> 1700000100 +0000\n\nFirst line\n\nMore words.\n")
    assert parse_commit_object(text) == {"message": "First line\n\nMore words.", "author": "Ada Lovelace",
                                         "email": "ada@example.com", "at": 1700000000.0}
    assert parse_commit_object("") is None


def test_the_page_view_of_a_job_context() -> None:
    job = {"repo_url": "git@github.com:ada/engine.git", "provider": "github", "ref": {"branch": "main", "id": SHA},
           "trigger": {"type": "pull_request", "url": "https://github.com/ada/engine/pull/7"},
           "triggered_by": {"kind": "token", "name": "bob"},
           "commit": {"message": "Subject\n\nbody", "author": {"name": "Ada"}}}
    shown = view(job)
    assert shown["author"] == "bob" and shown["by_text"] == "bob (API token)"
    assert shown["commit_subject"] == "Subject"
    assert shown["links"] == links(job) == {"commit": f"https://github.com/ada/engine/commit/{SHA}",
                                            "branch": "https://github.com/ada/engine/tree/main",
                                            "pull_request": "https://github.com/ada/engine/pull/7"}
    assert view({"ref": {}})["by"] is None  # a job from before: the page shows its trigger as before


@pytest.mark.parametrize(("text", "shown"), [
    (f"checked out {SHA}\n  Fix the parser\n  Ada Lovelace, 2024-01-01 12:00:00 +0000\n",
     {"message": "Fix the parser", "author": "Ada Lovelace", "at": 1704110400.0}),
    (f"checked out {SHA}\n  Merge a, b and c\n  Smith, Jo, 2024-01-01 13:00:00 +0100\n",
     {"message": "Merge a, b and c", "author": "Smith, Jo", "at": 1704110400.0}),
    (f"checked out {SHA}\n  \n  Ada, not a date\n", {"message": "", "author": "Ada"}),
    # Printed for another commit, or not what SHOW_COMMIT prints: nothing.
    (f"checked out {'f' * 40}\n  Fix\n  Ada, 2024-01-01 12:00:00 +0000\n", None),
    (f"checked out {SHA}\n", None),
    ("", None),
])
def test_the_subject_and_author_the_checkout_printed(text: str, shown: dict[str, Any] | None) -> None:
    assert shown_commit(text, SHA) == shown


def test_a_drones_checkout_report_gives_the_commit_when_the_queen_knew_none() -> None:
    body = {"commit": SHA, "message": "Fix the parser", "author": "Ada", "at": 1704110400.0}
    assert job_update(Msg.JOB_CHECKOUT, body) == {
        "ref.id": SHA, "commit": {"message": "Fix the parser", "author": {"name": "Ada"}, "at": 1704110400.0,
                                  "source": "checkout"}}
    assert job_update(Msg.JOB_CHECKOUT, {"commit": SHA}) == {"ref.id": SHA}  # an older drone's
    assert checkout_facts({"commit": SHA, "message": 7}) is None
