"""Which webhook the settings page shows (none that would answer 404) and which branch a badge tells about."""

from __future__ import annotations

import pytest

from apiary.queen.badges import badge_branch, built_from
from apiary.queen.pages import webhook_plugin

HOOKED = ["github", "gitlab"]  # the built-in plugins with a webhook


@pytest.mark.parametrize(("provider", "used", "hooked", "shown"), [
    ("git", [], HOOKED, None),                                  # a plain git repository: no webhook
    ("gitea", [], HOOKED, ("github", False)),                   # Gitea's deliveries go to the github plugin
    ("github", [], HOOKED, ("github", False)),                  # the page asks to add the plugin
    ("gitlab", ["schedule", "gitlab"], HOOKED, ("gitlab", True)),
    ("git", ["github"], HOOKED, ("github", True)),               # the plugin in use, whatever the provider says
    ("github", ["gitlab"], HOOKED, ("gitlab", True)),
    ("github", [], [], None),                                   # a queen without the plugin
    ("bitbucket", [], HOOKED, None),
])
def test_webhook_shown(provider: str, used: list[str], hooked: list[str], shown: tuple[str, bool] | None) -> None:
    assert webhook_plugin(provider, used, hooked) == shown


@pytest.mark.parametrize(("default", "asked", "branch"), [("main", None, "main"), ("trunk", None, "trunk"),
                                                          ("main", "feature/x", "feature/x"), ("main", "", "main")])
def test_badge_branch(default: str, asked: str | None, branch: str) -> None:
    assert badge_branch(default, asked) == branch


@pytest.mark.parametrize(("ref", "trigger", "counts"), [
    ({"branch": "main"}, {}, True),
    ({"fetch": "refs/pull/7/merge"}, {"base_branch": "main", "head_branch": "fix"}, False),  # a pull request into it
    ({"branch": "fix"}, {}, False),
])
def test_badge_counts_jobs_built_from_the_branch(ref: dict, trigger: dict, counts: bool) -> None:
    assert built_from({"ref": ref, "trigger": trigger}, "main") is counts  # type: ignore[arg-type]


@pytest.mark.parametrize(("extra", "counts"), [
    ({}, True),
    ({"triggered_by": {"kind": "user", "name": "ada"}}, True),
    ({"triggered_by": {"kind": "bisect", "bisect": "b1"}}, False),  # an older commit a bisect tried
    ({"parent": {"id": "p1", "number": 90, "unit": "N=2", "wave": 1}}, False),  # a spread cell's or a shard's job
])
def test_badge_counts_only_jobs_that_speak_for_the_branch(extra: dict, counts: bool) -> None:
    assert built_from({"ref": {"branch": "main"}, **extra}, "main") is counts  # type: ignore[arg-type]
