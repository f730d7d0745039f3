"""The notify plugin's pure parts: who is told of a job, its config checks, what the messages say, masking."""

from __future__ import annotations

from typing import Any

import pytest

from apiary.plugins import notify
from apiary.plugins.api import ConfigProblem, check_config

HOOK = {"type": "webhook", "url": "https://ci-bot.example.com/apiary"}


def target(**raw: Any) -> notify.Target:
    return notify.parse_target({**HOOK, **raw}, "targets[0]")


# -- which targets fire ------------------------------------------------------------------------------

@pytest.mark.parametrize(("when", "status", "previous", "fired"), [
    (["failure"], "failed", None, "failure"),
    (["failure"], "errored", "passed", "failure"),
    (["failure"], "passed", "failed", None),
    (["failure"], "cancelled", None, None),
    (["fixed"], "passed", "failed", "fixed"),
    (["fixed"], "passed", "errored", "fixed"),
    (["fixed"], "passed", "passed", None),
    (["fixed"], "passed", None, None),  # the branch's first job: nothing was broken
    (["fixed"], "failed", "failed", None),
    (["always"], "passed", None, "always"),
    (["always"], "cancelled", None, "always"),
    (["always"], "running", None, None),
    (["failure", "fixed"], "passed", "failed", "fixed"),
    (["failure", "fixed"], "failed", "passed", "failure"),
    (["failure", "fixed"], "passed", "passed", None),
    (["fixed", "always"], "passed", "failed", "fixed"),  # the first that fires names the event
])
def test_fires(when: list[str], status: str, previous: str | None, fired: str | None) -> None:
    assert notify.fires(when, status, previous) == fired


def test_chosen_filters_by_branch_and_names_the_event() -> None:
    everywhere = target(when="always")
    release = target(when=["failure"], branches=["release/*", "main"])
    fixed = target(when="fixed")
    targets = [everywhere, release, fixed]
    assert notify.chosen(targets, "failed", "release/2", None) == [(everywhere, "always"), (release, "failure")]
    assert notify.chosen(targets, "failed", "feature/x", None) == [(everywhere, "always")]
    assert notify.chosen(targets, "passed", "main", "errored") == [(everywhere, "always"), (fixed, "fixed")]
    assert notify.wants_previous(targets, "passed", "main") and not notify.wants_previous(targets, "failed", "main")
    assert not notify.wants_previous([release], "passed", "main")


@pytest.mark.parametrize(("earlier", "previous"), [
    ([], None),
    ([{"_id": "b", "status": "failed", "ref": {"branch": "main"}}], "failed"),
    # a cancelled job says nothing of the code, a running one has not ended: passed over
    ([{"_id": "c", "status": "cancelled", "ref": {"branch": "main"}},
      {"_id": "d", "status": "running", "ref": {"branch": "main"}},
      {"_id": "b", "status": "errored", "ref": {"branch": "main"}}], "errored"),
    # another branch's failure (a pull request into main is of its head branch) is not main's
    ([{"_id": "p", "status": "failed", "ref": {"fetch": "refs/pull/7/merge"},
       "trigger": {"head_branch": "fix", "base_branch": "main"}},
      {"_id": "b", "status": "passed", "ref": {"branch": "main"}}], "passed"),
])
def test_previous_status(earlier: list[dict[str, Any]], previous: str | None) -> None:
    job = {"_id": "z", "status": "passed", "ref": {"branch": "main"}}
    assert notify.previous_status(job, earlier) == previous


# -- config ----------------------------------------------------------------------------------------------

EMAIL = {"type": "email", "host": "smtp.example.com", "from": "ci@example.com", "to": ["team@example.com"]}


@pytest.mark.parametrize(("targets", "field", "words"), [
    ([], "targets", "at least one"),
    (["slack"], "targets[0]", "mapping"),
    ([{"type": "teams", "url": "https://x"}], "targets[0].type", "webhook, slack, email"),
    ([{"type": "webhook"}], "targets[0].url", "url or url_secret"),
    ([{"type": "webhook", "url": "https://a", "url_secret": "A"}], "targets[0].url", "one of them"),
    ([{"type": "webhook", "url": "ftp://a/b"}], "targets[0].url", "http(s)"),
    ([{"type": "webhook", "url": "file:///etc/passwd"}], "targets[0].url", "http(s)"),
    ([{"type": "webhook", "url": "http://a:99999/"}], "targets[0].url", "port"),
    ([{"type": "webhook", "url": "https://u:pw@hooks.example.com/x"}], "targets[0].url", "url_secret"),
    ([{"type": "webhook", "url": "https://hooks.example.com/a\r\nX-Evil: 1"}], "targets[0].url", "control characters"),
    ([{"type": "webhook", "url": "https://hooks.example.com/" + "a" * 3000}], "targets[0].url", "2048 characters"),
    ([HOOK, {"type": "slack", "url_secret": "not a name"}], "targets[1].url_secret", "name of a secret"),
    ([{"type": "slack", "url_secret": "S", "token_secret": "T"}], "targets[0].token_secret", "unknown setting"),
    ([{**HOOK, "when": ["failure", "sometimes"]}], "targets[0].when[1]", "failure, fixed, always"),
    ([{**HOOK, "when": "never"}], "targets[0].when", "failure, fixed, always"),
    ([{**HOOK, "when": []}], "targets[0].when", "at least one"),
    ([{**HOOK, "branches": ["main", 3]}], "targets[0].branches[1]", "text"),
    ([{**HOOK, "colour": "red"}], "targets[0].colour", "unknown setting"),
    ([{k: v for k, v in EMAIL.items() if k != "host"}], "targets[0].host", "required"),
    ([{**EMAIL, "to": []}], "targets[0].to", "1 to 50"),
    ([{**EMAIL, "to": ["team"]}], "targets[0].to[0]", "e-mail address"),
    ([{**EMAIL, "from": "ci@x\r\nBcc: all@x"}], "targets[0].from", "one line"),
    ([{**EMAIL, "port": 0}], "targets[0].port", "1-65535"),
    ([{**EMAIL, "port": "25"}], "targets[0].port", "port number"),
    ([{**EMAIL, "security": "ssl"}], "targets[0].security", "starttls, tls, none"),
    ([{**EMAIL, "username": "ci"}], "targets[0].password_secret", "go together"),
    ([{**EMAIL, "password_secret": "P"}], "targets[0].username", "go together"),
    ([{**EMAIL, "password": "hunter2"}], "targets[0].password", "unknown setting"),  # never in the config
])
def test_a_bad_config_is_refused_naming_the_field(targets: list[Any], field: str, words: str) -> None:
    with pytest.raises(ConfigProblem) as fault:
        check_config(notify.config_schema, {"targets": targets}, notify)
    assert fault.value.field == field
    assert words in fault.value.problem


def test_a_good_config_and_its_defaults() -> None:
    config = {"targets": [{"type": "slack", "url_secret": "SLACK_HOOK", "when": "always"},
                          {**EMAIL, "security": "tls", "username": "ci", "password_secret": "SMTP_PASSWORD"},
                          {**HOOK, "token_secret": "BOT", "branches": "release/*", "name": "bot"}]}
    assert check_config(notify.config_schema, config, notify) == config  # kept as written
    slack, email, hook = notify.parse_targets(config)
    assert (slack.when, slack.branches, slack.where) == (("always",), (), "targets[0] (slack)")
    assert (email.port, email.security, email.to, email.when) == (465, "tls", ("team@example.com",),
                                                                  ("failure", "fixed"))
    assert (hook.branches, hook.where) == (("release/*",), "targets[2] (bot)")
    assert notify.queen_secrets(config) == {"SLACK_HOOK", "SMTP_PASSWORD", "BOT"}
    assert notify.queen_secrets({"targets": "broken"}) == set()


# -- what is said ------------------------------------------------------------------------------------------

FAILED_JOB = {
    "_id": "01JOB", "repo": "app", "number": 12, "status": "failed", "type": "TEST",
    "ref": {"branch": "main", "id": "3f2a9c1d" + "0" * 32}, "trigger": {"type": "push"},
    "triggered_by": {"kind": "user", "name": "ada"}, "commit": {"message": "Speed up <everything> @channel\n\nmore"},
    "started": 100.0, "finished": 142.4, "error": "failed",
    "pipeline": {"stages": [{"name": "unit", "needs": [], "steps": [{"run": "pytest -q"}]}]},
    "commands": {"1": {"num": 1, "command": "pytest -q", "title": "pytest -q", "stage": "unit", "phase": "test",
                       "started": 101.0, "exitCode": 1, "duration": 40.0}},
}
URL = "http://127.0.0.1:8420/jobs/01JOB"


def test_facts_say_what_users_rely_on() -> None:
    f = notify.facts(FAILED_JOB, "failure", URL)
    assert {k: f[k] for k in ("event", "repo", "number", "id", "status", "branch", "url", "duration")} == {
        "event": "failure", "repo": "app", "number": 12, "id": "01JOB", "status": "failed", "branch": "main",
        "url": URL, "duration": 42.4}
    assert f["commit"] == FAILED_JOB["ref"]["id"] and f["triggered_by"] == {"kind": "user", "name": "ada"}
    assert f["failure"] == {"stage": "unit", "title": "pytest -q", "command": "pytest -q", "exitCode": 1}
    assert f["error"] is None and f["message"] == "Speed up <everything> @channel"
    assert notify.summary(f) == "app #12 failed on main (3f2a9c1) in 42 s"


def test_email_and_slack_texts() -> None:
    f = notify.facts(FAILED_JOB, "failure", URL)
    subject, text = notify.email_text(f)
    assert subject == "[apiary] app #12 failed on main"
    assert URL in text and "stage unit: pytest -q, exit code 1" in text and "Triggered by: ada (user)" in text
    body = notify.slack_body(f)
    assert body["text"].startswith(":x: app #12 failed on main (3f2a9c1) in 42 s: " + URL)
    assert f"<{URL}|app #12>" in body["blocks"][0]["text"]["text"]
    passed = notify.facts({**FAILED_JOB, "status": "passed", "error": None, "commands": {}}, "fixed", URL)
    assert notify.email_text(passed)[0] == "[apiary] app #12 passed on main (fixed)"
    assert notify.slack_body(passed)["text"].startswith(":white_check_mark: app #12 passed")


def test_slack_text_from_the_jobs_people_cannot_link_or_mention() -> None:
    job = {**FAILED_JOB, "ref": {"branch": "<!channel>&@here"}, "commands": {}, "error": "setup: <b>"}
    body = notify.slack_body(notify.facts(job, "failure", URL))
    for said in (body["text"], body["blocks"][0]["text"]["text"]):
        assert "<!channel>" not in said and "@here" not in said and "<b>" not in said
        assert "&lt;!channel&gt;&amp;" in said


def test_mask_and_urls() -> None:
    assert notify.mask("POST https://h/T0/B1/xyzzy failed: xyzzy", ["xyzzy", ""]) == "POST https://h/T0/B1/*** failed: ***"
    assert notify.mask("token ab, abc", ["ab", "abc"]) == "token ***, ***"  # the longer first
    assert notify.url_problem("https://hooks.slack.com/services/T/B/x") is None
    for bad in ("javascript:alert(1)", "http://", "gopher://h/", "/relative"):
        assert notify.url_problem(bad)


def test_the_secrets_it_names_stay_on_the_queen() -> None:
    from apiary.queen.plugin_registry import Plugins

    plugins = Plugins({"notify": notify})
    repo = {"plugins": [{"name": "notify", "config": {"targets": [
        {"type": "slack", "url_secret": "SLACK_HOOK"}, {**HOOK, "token_secret": "BOT"}]}}]}
    assert plugins.queen_secrets(repo) == {"SLACK_HOOK", "BOT"}


def test_long_texts_are_cut() -> None:
    script = "echo " + "x" * 5000
    job = {**FAILED_JOB, "error": "e" * 5000, "commit": {"message": "m" * 5000},
           "commands": {"1": {**FAILED_JOB["commands"]["1"], "command": script, "title": "build"}}}
    f = notify.facts(job, "failure", URL)
    assert len(f["failure"]["command"]) == notify.MAX_TEXT + 1 and f["failure"]["command"].endswith("…")
    assert len(f["error"]) == len(f["message"]) == notify.MAX_TEXT + 1
