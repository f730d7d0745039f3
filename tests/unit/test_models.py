"""The job request, as a table: what a caller gives, and the request it makes or the message it gets.

One builder (apiary.core.jobrequest.job_request) for the API, the dashboard and the CLI (through the
API) and the queen's plugins (ctx.trigger); its messages are the ones the API has always given.
"""

from __future__ import annotations

from typing import Any

import pytest

from apiary.core.errors import BadRequest
from apiary.core.jobrequest import JOB_FIELDS, TRIGGER_FIELDS, job_request
from apiary.core.models import JobBody, TriggerBody

REPO = {"_id": "app", "default_branch": "trunk"}
NOW = 1_700_000_000.0
API = {"type": "manual", "author": {}, "message": "", "url": "", "timestamp": NOW, "source": {"type": "API"}}

# (what an API client gives, the request's ref, type, parameters and trigger: what differs from API)
GOOD = [
    ({}, {"branch": "trunk"}, "TEST", {}, {}),
    ({"branch": "dev", "commit": "abc1234"}, {"branch": "dev", "id": "abc1234"}, "TEST", {}, {}),
    ({"fetch": "refs/pull/7/merge"}, {"fetch": "refs/pull/7/merge"}, "TEST", {}, {}),
    ({"fetch": "+refs/tags/v1:refs/tags/v1", "commit": "A" * 40}, {"fetch": "+refs/tags/v1:refs/tags/v1", "id": "A" * 40},
     "TEST", {}, {}),
    ({"fetch": "", "branch": ""}, {"branch": "trunk"}, "TEST", {}, {}),  # an empty field is one not given
    ({"branch": "refs/heads/release/2.0", "commit": "abc1"}, {"branch": "refs/heads/release/2.0", "id": "abc1"},
     "TEST", {}, {}),
    ({"commit": ""}, {"branch": "trunk"}, "TEST", {}, {}),
    ({"type": "TEST_DEPLOY"}, {"branch": "trunk"}, "TEST_DEPLOY", {}, {}),
    ({"parameters": {"A": 1, "B": True, "C": False, "D": 1.5, "E": "x", "_F2": ""}}, {"branch": "trunk"}, "TEST",
     {"A": "1", "B": "true", "C": "false", "D": "1.5", "E": "x", "_F2": ""}, {}),
    ({"parameters": None, "trigger": None}, {"branch": "trunk"}, "TEST", {}, {}),
    ({"trigger": {"source": "UI"}}, {"branch": "trunk"}, "TEST", {}, {"source": {"type": "UI"}}),
    ({"trigger": {"author": "ann", "type": "nightly", "message": "hi", "url": "https://ci.example/1"}},
     {"branch": "trunk"}, "TEST", {},
     {"author": {"name": "ann"}, "type": "nightly", "message": "hi", "url": "https://ci.example/1"}),
    ({"trigger": {"author": {"name": "ann", "email": "ann@example.org"}, "url": ""}}, {"branch": "trunk"}, "TEST",
     {}, {"author": {"name": "ann", "email": "ann@example.org"}}),
    ({"trigger": {"author": {"login": "ann", "name": "A" * 256}, "source": {"type": "UI"}}}, {"branch": "trunk"},
     "TEST", {}, {"author": {"login": "ann", "name": "A" * 256}, "source": {"type": "UI"}}),
    # The most a parameter and all of them may hold (64 KiB, 256 KiB): what the kernel takes as the environment.
    ({"parameters": {"P": "v" * 65536, "Q": "é" * 32768}}, {"branch": "trunk"}, "TEST",
     {"P": "v" * 65536, "Q": "é" * 32768}, {}),
    ({"parameters": {f"P{i}": "v" * 65530 for i in range(3)}}, {"branch": "trunk"}, "TEST",
     {f"P{i}": "v" * 65530 for i in range(3)}, {}),
]


@pytest.mark.parametrize(("given", "ref", "job_type", "parameters", "trigger"), GOOD)
def test_a_good_request_is_made_into_a_job_request(given: dict[str, Any], ref: dict[str, str], job_type: str,
                                                   parameters: dict[str, str], trigger: dict[str, Any]) -> None:
    assert job_request(REPO, given, NOW) == {"ref": ref, "type": job_type, "parameters": parameters,
                                             "trigger": {**API, **trigger}}


# (what an API client gives, the field named, the whole message): the API's messages, word for word
BAD = [
    ({"when": "now"}, "when", "when: unknown field (known: branch, commit, fetch, parameters, trigger, type)"),
    ({"type": "BUILD"}, "type", "type: must be one of TEST, DEPLOY, TEST_DEPLOY"),
    ({"type": 5}, "type", "type: must be a string, got int"),
    ({"fetch": ["refs/pull/7/merge"]}, "fetch", "fetch: must be a string, got list"),
    ({"branch": 7}, "branch", "branch: must be a string, got int"),
    ({"commit": 7}, "commit", "commit: must be a string, got int"),
    ({"parameters": ["A"]}, "parameters", "parameters: must be an object of NAME: value"),
    ({"parameters": {"1BAD": "x"}}, "parameters.1BAD",
     "parameters.1BAD: a parameter name is letters, digits and '_', not starting with a digit"),
    ({"parameters": {"A-B": "x"}}, "parameters.A-B",
     "parameters.A-B: a parameter name is letters, digits and '_', not starting with a digit"),
    ({"parameters": {"L" * 129: "x"}}, "parameters." + "L" * 129,
     f"parameters.{'L' * 129}: a parameter name is letters, digits and '_', not starting with a digit"),
    ({"parameters": {"OK": {"nested": 1}}}, "parameters.OK", "parameters.OK: must be a string or a number"),
    ({"parameters": {"OK": None}}, "parameters.OK", "parameters.OK: must be a string or a number"),
    # A value no environment variable can hold: the job would fail as it starts ("embedded null byte",
    # "Argument list too long").
    ({"parameters": {"P": "a\0b"}}, "parameters.P",
     "parameters.P: contains a NUL byte, which no environment variable can hold"),
    ({"parameters": {"P": "v" * 65537}}, "parameters.P",
     "parameters.P: 65537 bytes, more than the 64 KiB a parameter's value may hold"),
    ({"parameters": {"P": "é" * 32769}}, "parameters.P",  # bytes, not characters
     "parameters.P: 65538 bytes, more than the 64 KiB a parameter's value may hold"),
    ({"parameters": {f"P{i}": "v" * 65536 for i in range(5)}}, "parameters.P3",
     "parameters.P3: the parameters come to more than the 256 KiB all of a job's may hold (names and values)"),
    ({"parameters": {f"P{i}": "x" for i in range(50_000)}}, "parameters.P30361",
     "parameters.P30361: the parameters come to more than the 256 KiB all of a job's may hold (names and values)"),
    # The ref, by git's rules (whether or not the repository has a URL), naming the field sent.
    ({"branch": "-x"}, "branch", "branch: '-x' is not a valid ref name (git check-ref-format)"),
    ({"branch": "ma\0in"}, "branch", "branch: 'ma\\x00in' is not a valid ref name (git check-ref-format)"),
    ({"branch": "a..b"}, "branch", "branch: 'a..b' is not a valid ref name (git check-ref-format)"),
    ({"branch": "b" * 100_000}, "branch", "branch: longer than 1024 characters"),
    ({"fetch": "--upload-pack=touch /tmp/x"}, "fetch",
     "fetch: '--upload-pack=touch /tmp/x' is not a valid ref name (git check-ref-format)"),
    ({"fetch": "refs/pull/7/merge", "branch": "dev"}, "branch",
     "branch: give a branch or a fetch refspec (fetch), not both"),
    ({"commit": "zzzz"}, "commit", "commit: 'zzzz' is not a commit sha (4 to 64 hex digits)"),
    ({"commit": "--output=/tmp/x", "branch": "-x"}, "commit",
     "commit: '--output=/tmp/x' is not a commit sha (4 to 64 hex digits)"),
    ({"commit": "a" * 65}, "commit", f"commit: {'a' * 65!r} is not a commit sha (4 to 64 hex digits)"),
    ({"trigger": "push"}, "trigger", "trigger: must be an object"),
    ({"trigger": {"sauce": "API"}}, "trigger.sauce",
     "trigger.sauce: unknown field (known: author, message, source, type, url)"),
    ({"trigger": {"fork": False}}, "trigger.fork",  # only a plugin says where a pull request comes from
     "trigger.fork: unknown field (known: author, message, source, type, url)"),
    ({"trigger": {"source": "robot"}}, "trigger.source", "trigger.source: must be one of UI, API (a plugin's trigger is made by the plugin)"),
    ({"trigger": {"source": {"kind": "API"}}}, "trigger.source", "trigger.source: must be one of UI, API (a plugin's trigger is made by the plugin)"),
    # An API client claiming to be a plugin would make its job a push (and get push-only secrets).
    ({"trigger": {"source": {"type": "plugin", "plugin": "github"}, "type": "push"}}, "trigger.source",
     "trigger.source: must be one of UI, API (a plugin's trigger is made by the plugin)"),
    ({"trigger": {"source": 1}}, "trigger.source", "trigger.source: must be one of UI, API (a plugin's trigger is made by the plugin)"),
    ({"trigger": {"author": {"name": 1}}}, "trigger.author", "trigger.author: must be a name or an object of strings"),
    ({"trigger": {"author": ["ann"]}}, "trigger.author", "trigger.author: must be a name or an object of strings"),
    # A client's source is its type: a name would show on the pages as if a plugin had made the job.
    ({"trigger": {"source": {"type": "UI", "name": "github push"}}}, "trigger.source",
     "trigger.source: an API client's source is only its type, UI or API (not name)"),
    ({"trigger": {"source": {"type": "API", "plugin": "github", "$x": 1}}}, "trigger.source",
     "trigger.source: an API client's source is only its type, UI or API (not $x, plugin)"),
    # An author is a name, an email and a login: keys a store query would read as operators are refused.
    ({"trigger": {"author": {"$where": "x"}}}, "trigger.author.$where",
     "trigger.author.$where: unknown field (known: email, login, name)"),
    ({"trigger": {"author": {"name": "ann", "a.b": "y"}}}, "trigger.author.a.b",
     "trigger.author.a.b: unknown field (known: email, login, name)"),
    ({"trigger": {"author": {"email": "e" * 257}}}, "trigger.author.email",
     "trigger.author.email: longer than 256 characters"),
    ({"trigger": {"author": "n" * 257}}, "trigger.author.name", "trigger.author.name: longer than 256 characters"),
    ({"trigger": {"url": "javascript:alert(1)"}}, "trigger.url",
     "trigger.url: must be an http:// or https:// address (the job page links to it)"),
    ({"trigger": {"url": " https://ci.example/1"}}, "trigger.url",
     "trigger.url: must be an http:// or https:// address (the job page links to it)"),
    ({"trigger": {"url": 5}}, "trigger.url", "trigger.url: must be a string, got int"),
    ({"trigger": {"type": 5}}, "trigger.type", "trigger.type: must be a string, got int"),
    ({"trigger": {"message": ["x"]}}, "trigger.message", "trigger.message: must be a string, got list"),
    # Several faults: the first in the order the fields are checked is named.
    ({"type": "BUILD", "when": "now"}, "when", ("when: unknown field (known: branch, commit, fetch, parameters, "
                                                "trigger, type)")),
    ({"parameters": ["A"], "type": "BUILD"}, "type", "type: must be one of TEST, DEPLOY, TEST_DEPLOY"),
    ({"trigger": "push", "parameters": ["A"]}, "parameters", "parameters: must be an object of NAME: value"),
]


@pytest.mark.parametrize(("given", "field", "message"), BAD)
def test_a_bad_request_is_refused_naming_the_field(given: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        job_request(REPO, given, NOW)
    assert (refused.value.field, str(refused.value), refused.value.status) == (field, message, 400)


def test_the_fields_checked_are_the_api_bodys() -> None:
    assert JOB_FIELDS == set(JobBody.__annotations__) == {"branch", "commit", "fetch", "type", "parameters", "trigger"}
    assert TRIGGER_FIELDS == set(TriggerBody.__annotations__) == {"source", "type", "author", "message", "url"}


# -- a plugin's request (ctx.trigger) ---------------------------------------------------------

def plugin_request(trigger: Any = None, source: dict[str, Any] | None = None, **given: Any) -> dict[str, Any]:
    return dict(job_request(REPO, {"type": "TEST", "trigger": trigger, **given}, NOW, plugin="github",
                            source=source))


def test_a_plugins_trigger_is_recorded_as_it_reports_it() -> None:
    asked = plugin_request({"type": "push", "author": {"name": "ann", "id": 7}, "message": "fix", "fork": False,
                            "url": "https://forge.example/c/1", "timestamp": 5.0, "extra": "kept out"},
                           source={"delivery": "d1"}, branch="dev", commit="abc1234")
    assert asked == {"ref": {"branch": "dev", "id": "abc1234"}, "type": "TEST", "parameters": {}, "trigger": {
        "type": "push", "author": {"name": "ann", "id": "7"}, "message": "fix", "url": "https://forge.example/c/1",
        "timestamp": 5.0, "source": {"delivery": "d1", "type": "plugin", "plugin": "github"}, "fork": False}}


@pytest.mark.parametrize(("trigger", "source", "recorded"), [
    (None, None, {"type": "github", "author": {}, "message": "", "url": "", "timestamp": NOW,
                  "source": {"type": "plugin", "plugin": "github"}}),
    # Coerced, never refused: a name for an author, strings for the rest; a link no page may show is left out.
    ({"author": "ann", "message": 3, "url": "javascript:alert(1)"}, None,
     {"type": "github", "author": {"name": "ann"}, "message": "3", "url": "", "timestamp": NOW,
      "source": {"type": "plugin", "plugin": "github"}}),
    # A pull request is from a fork unless the plugin says false; a source cannot claim another plugin.
    ({"type": "pull_request", "fork": "no"}, {"type": "UI", "plugin": "gitlab", "number": 7},
     {"type": "pull_request", "author": {}, "message": "", "url": "", "timestamp": NOW, "fork": True,
      "source": {"type": "plugin", "plugin": "github", "number": 7}}),
])
def test_a_plugins_trigger_is_made_of_what_it_gives(trigger: Any, source: dict[str, Any] | None,
                                                     recorded: dict[str, Any]) -> None:
    assert plugin_request(trigger, source)["trigger"] == recorded


@pytest.mark.parametrize(("given", "field", "message"), [
    ({"type": "BUILD"}, "type", "type: must be one of TEST, DEPLOY, TEST_DEPLOY"),
    ({"parameters": {"A-B": "x"}}, "parameters.A-B",
     "parameters.A-B: a parameter name is letters, digits and '_', not starting with a digit"),
    ({"parameters": {"A": ["x"]}}, "parameters.A", "parameters.A: must be a string or a number"),
    ({"fetch": 7}, "fetch", "fetch: must be a string, got int"),
    ({"branch": "a b"}, "branch", "branch: 'a b' is not a valid ref name (git check-ref-format)"),
    ({"branch": "main", "commit": "HEAD"}, "commit", "commit: 'HEAD' is not a commit sha (4 to 64 hex digits)"),
])
def test_a_plugins_request_is_checked_as_a_clients_is(given: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        plugin_request(**given)
    assert (refused.value.field, str(refused.value)) == (field, message)
