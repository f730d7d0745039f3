"""A request for a job, checked: the one way a job is asked for, whoever asks.

`job_request` makes a `JobRequest` (apiary.core.models) of what a caller gives, in the API's field
names (`JobBody`: branch, commit, fetch, type, parameters, trigger). The API's
``POST /api/v1/repos/{name}/jobs`` and re-run (which the dashboard's trigger form and re-run button
and `apiary trigger` call) and the queen's plugins (``ctx.trigger``) all make theirs here, then
apiary.queen.jobs.create_job makes the job. Every fault raises BadRequest (an InputError) naming the
first field at fault: ``type: must be one of TEST, DEPLOY, TEST_DEPLOY``, ``parameters.X: ...``.
What the pipeline has to say (the parameters it declares, a ref git can find) is checked when the
job is made.

The ref is checked here by git's rules (apiary.core.refs.parse_ref), whether or not the repository
has a URL, and a fault names the field the caller sent (``branch``, ``commit``, ``fetch``); a branch
and a fetch refspec together are refused. A parameter's value becomes an environment variable of the
job's commands, so a NUL byte, a value over 64 KiB or parameters over 256 KiB in all (which the kernel
would refuse when the job starts) are refused now, naming ``parameters.P``.

The trigger records who asked. An API client's is checked and refused when wrong (a `source` that
is only its type, UI or API; an `author` of name, email and login, short strings; an http(s) `url`). A plugin's is the queen's own code reporting what a forge or a
schedule said: it is recorded as given, as strings, and a `url` no page may link to is left out
rather than refused.

Pure, no I/O: the caller gives the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from .errors import BadRequest, GitError
from .fields import ENV_NAME, get_str, is_web_link, no_unknown
from .models import JobBody, JobRequest, Ref, Trigger, TriggerBody, TriggerSource
from .protocol import JobType
from .refs import parse_ref

JOB_TYPES = tuple(t.value for t in JobType)
# What an API client may say it is: only a queen plugin's trigger is "plugin" (apiary.queen.trust trusts
# a plugin's word that a job is a push, a tag or a schedule, and those kinds may get secrets a manual job does not).
CLIENT_SOURCES = ("UI", "API")
JOB_FIELDS = frozenset(JobBody.__optional_keys__)  # what a request may hold: branch, commit, fetch, type...
TRIGGER_FIELDS = frozenset(TriggerBody.__optional_keys__)  # ... and its trigger: source, type, author...
# What an API client's author may say: the keys the pages show, each a short string (stored as given).
AUTHOR_FIELDS = ("name", "email", "login")
AUTHOR_MAX = 256  # characters
# A parameter is an environment variable of every command: Linux refuses one string over 128 KiB
# (MAX_ARG_STRLEN) and all of them over a share of the stack limit ("Argument list too long"), so the
# caps leave room below both for the queen's own variables.
PARAMETER_MAX = 64 * 1024  # bytes (UTF-8) of one value
PARAMETERS_MAX = 256 * 1024  # bytes of all of them: NAME=value and its NUL each
REF_MAX = 1024  # characters of a branch or a fetch refspec; git's own limit is the file system's


def job_request(repo: Mapping[str, Any], given: Mapping[str, Any], now: float, *, plugin: str | None = None,
                source: Mapping[str, Any] | None = None) -> JobRequest:
    """A checked request for a job of `repo` from `given` (a request's fields) at `now` (seconds since 1970).

    The ref is `fetch` if given, else `branch` (default: the repository's
    ``default_branch``), pinned to `commit` if given. `plugin`: the queen
    plugin asking (``ctx.trigger``); ``given["trigger"]`` is then its report and
    `source` adds details to the trigger's source. Otherwise the trigger is an
    API client's. Raises BadRequest naming the first field at fault, in the
    order of the fields above.
    """
    no_unknown(given, JOB_FIELDS)
    job_type = get_str(given, "type", JobType.TEST.value)
    if job_type not in JOB_TYPES:
        raise BadRequest(f"type: must be one of {', '.join(JOB_TYPES)}", field="type")
    ref = _ref(repo, given)
    parameters = _parameters(given.get("parameters"))
    if plugin is None:
        trigger = _client_trigger(given.get("trigger"), now)
    else:
        trigger = _plugin_trigger(given.get("trigger"), plugin, source, now)
    return {"ref": ref, "type": job_type, "parameters": parameters, "trigger": trigger}


def _ref(repo: Mapping[str, Any], given: Mapping[str, Any]) -> Ref:
    """The job's ref: `fetch` or `branch` (default: the repository's default branch), at `commit` if given.

    An empty string is the field not given. Checked by parse_ref, the rule the
    drone's checkout and the queen's git read apply, so what is accepted here
    is what git is asked for; a fault names the field the caller sent.
    """
    fetch, branch, commit = (get_str(given, name) or None for name in ("fetch", "branch", "commit"))
    if fetch and branch:
        raise BadRequest("branch: give a branch or a fetch refspec (fetch), not both", field="branch")
    for name, text in (("fetch", fetch), ("branch", branch)):
        if text is not None and len(text) > REF_MAX:
            raise BadRequest(f"{name}: longer than {REF_MAX} characters", field=name)
    ref: Ref = {"fetch": fetch} if fetch else {"branch": branch or repo.get("default_branch") or "main"}
    if commit:
        ref["id"] = commit
    try:
        parse_ref(ref)
    except GitError:
        if commit and not _is_sha(commit):
            raise BadRequest(f"commit: {commit[:80]!r} is not a commit sha (4 to 64 hex digits)",
                             field="commit") from None
        name, shown = ("fetch", fetch) if fetch else ("branch", ref.get("branch", ""))
        raise BadRequest(f"{name}: {str(shown)[:200]!r} is not a valid ref name (git check-ref-format)",
                         field=name) from None
    return ref


def _is_sha(text: str) -> bool:
    """Whether parse_ref takes `text` as a commit (with a branch it surely takes)."""
    try:
        parse_ref({"branch": "main", "id": text})
    except GitError:
        return False
    return True


def _parameters(value: Any) -> dict[str, str]:
    """NAME: value, each value a string (numbers as written, true/false in lower case) an environment
    variable can hold: no NUL, at most PARAMETER_MAX bytes, all together at most PARAMETERS_MAX."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("parameters: must be an object of NAME: value", field="parameters")
    out = {}
    total = 0
    for name, v in value.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise BadRequest(f"parameters.{name}: a parameter name is letters, digits and '_', "
                             "not starting with a digit", field=f"parameters.{name}")
        if isinstance(v, bool):
            v = "true" if v else "false"
        if not isinstance(v, (str, int, float)):
            raise BadRequest(f"parameters.{name}: must be a string or a number", field=f"parameters.{name}")
        v = str(v)
        if "\0" in v:
            raise BadRequest(f"parameters.{name}: contains a NUL byte, which no environment variable can hold",
                             field=f"parameters.{name}")
        size = len(v.encode("utf-8", "surrogatepass"))
        if size > PARAMETER_MAX:
            raise BadRequest(f"parameters.{name}: {size} bytes, more than the {PARAMETER_MAX // 1024} KiB a "
                             "parameter's value may hold", field=f"parameters.{name}")
        total += len(name) + size + 2
        if total > PARAMETERS_MAX:
            raise BadRequest(f"parameters.{name}: the parameters come to more than the {PARAMETERS_MAX // 1024} "
                             "KiB all of a job's may hold (names and values)", field=f"parameters.{name}")
        out[name] = v
    return out


def _client_trigger(value: Any, now: float) -> Trigger:
    """An API client's trigger (`TriggerBody`), checked: a fault is refused, naming the field."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise BadRequest("trigger: must be an object", field="trigger")
    no_unknown(value, TRIGGER_FIELDS, "trigger.")
    source = value.get("source", "API")
    if isinstance(source, str):
        source = {"type": source}
    if not isinstance(source, dict) or source.get("type") not in CLIENT_SOURCES:
        raise BadRequest(f"trigger.source: must be one of {', '.join(CLIENT_SOURCES)} (a plugin's trigger is "
                         "made by the plugin)", field="trigger.source")
    if set(source) != {"type"}:  # the pages show a source's name: a client's would pass for a plugin's
        extra = ", ".join(sorted(str(k) for k in source if k != "type"))
        raise BadRequest(f"trigger.source: an API client's source is only its type, UI or API (not {extra})",
                         field="trigger.source")
    author = _author(value.get("author", {}))
    url = get_str(value, "url", "", prefix="trigger.")
    if url and not is_web_link(url):
        raise BadRequest("trigger.url: must be an http:// or https:// address (the job page links to it)",
                         field="trigger.url")
    return {
        "type": get_str(value, "type", "manual", prefix="trigger."),
        "author": author,
        "message": get_str(value, "message", "", prefix="trigger."),
        "url": url,
        "timestamp": now,
        "source": cast("TriggerSource", source),  # checked: its type is one of CLIENT_SOURCES
    }


def _author(author: Any) -> dict[str, str]:
    """An API client's author: a name, or an object of AUTHOR_FIELDS, each at most AUTHOR_MAX characters."""
    if isinstance(author, str):
        author = {"name": author}
    if not isinstance(author, dict) or not all(isinstance(v, str) for v in author.values()):
        raise BadRequest("trigger.author: must be a name or an object of strings", field="trigger.author")
    no_unknown(author, AUTHOR_FIELDS, "trigger.author.")
    for key, text in author.items():
        if len(text) > AUTHOR_MAX:
            raise BadRequest(f"trigger.author.{key}: longer than {AUTHOR_MAX} characters",
                             field=f"trigger.author.{key}")
    return author


def _plugin_trigger(value: Any, plugin: str, source: Mapping[str, Any] | None, now: float) -> Trigger:
    """A plugin's report of why (type, author, message, url, timestamp; a pull request's fork, head_branch
    and base_branch), recorded as strings.

    A `url` no page may link to is left out. ``fork`` (a pull or merge request's)
    is true unless the plugin says false: only then may the job get secrets
    (apiary.queen.trust).
    """
    given = dict(value or {})
    author = given.get("author") or {}
    url = str(given.get("url") or "")
    # TriggerSource's keys, and whatever details the plugin adds (a TypedDict cannot say "and more").
    origin = cast("TriggerSource", {**(source or {}), "type": "plugin", "plugin": plugin})
    record: Trigger = {
        "type": str(given.get("type") or plugin),
        "author": {str(k): str(v) for k, v in (author.items() if isinstance(author, dict) else [("name", author)])},
        "message": str(given.get("message") or ""),
        "url": url if is_web_link(url) else "",
        "timestamp": given.get("timestamp") or now,
        "source": origin,
    }
    if "fork" in given:  # a pull or merge request: from another repository (the default) or this one
        record["fork"] = given["fork"] is not False
    # A pull or merge request's branches: the history finds its jobs by either (store.list_jobs).
    if given.get("head_branch"):
        record["head_branch"] = str(given["head_branch"])
    if given.get("base_branch"):
        record["base_branch"] = str(given["base_branch"])
    return record
