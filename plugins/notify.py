"""The notify plugin: tells people when a job ends, by webhook (JSON), e-mail (SMTP) or a Slack-compatible hook.

A repository's config (the settings page's YAML, or ``plugins`` in
``PUT /api/v1/repos/NAME``)::

    {"targets": [
        {"type": "webhook", "url": "https://ci-bot.example.com/apiary",   # or url_secret: NAME
         "token_secret": "BOT_TOKEN",           # optional: Authorization: Bearer <the secret's value>
         "when": ["failure", "fixed"],          # default; or "always", or one of them as a string
         "branches": ["main", "release/*"]},    # shell patterns; default every branch
        {"type": "slack", "url_secret": "SLACK_HOOK"},   # Slack, Mattermost, Rocket.Chat incoming webhooks
        {"type": "email", "host": "smtp.example.com", "port": 587,    # port: 587, 465 (tls) or 25 by default
         "security": "starttls",                # starttls (default), tls (implicit, port 465) or none
         "username": "ci@example.com", "password_secret": "SMTP_PASSWORD",
         "from": "ci@example.com", "to": ["team@example.com"]}]}

When fires (`fires`, pure): ``failure`` for a job that ended failed or errored;
``fixed`` for a job that passed when the previous finished job of the same
repository and branch (triggered before it; cancelled jobs say nothing about
the code and are passed over) failed or errored; ``always`` for every job that
ends (passed, failed, errored, cancelled).

What is sent (`facts`): repo, number, id, status, the event that fired, branch,
commit, type, triggered_by, duration (seconds, start to end), the job page's
URL, the error, and the failed stage and command when there is one (the job
page's own failure summary, apiary.core.outcome). A webhook gets it as JSON
(``X-Apiary-Event`` says the event); a Slack-compatible hook gets ``{"text",
"blocks"}`` (text for Mattermost and Rocket.Chat, blocks for Slack; what the
job's people wrote is escaped so that it cannot mention anyone); e-mail gets a
plain-text message whose subject is ``[apiary] REPO #N STATUS on BRANCH``.

Secrets: URLs that carry a token (Slack's do) and the SMTP password are
repository secrets named in the config (``url_secret``, ``token_secret``,
``password_secret``), read when a message is sent: never stored in the config,
never logged, replaced by ``***`` in any error logged, and kept on the queen
(jobs are not given them: `queen_secrets`). A secret that is not set means
that target is skipped (logged).

Delivery never touches the job: ``job_done`` only decides and queues; the
plugin's background workers (WORKERS at once, at most MAX_PENDING waiting,
beyond that dropped and logged) send, each attempt cut off after
ATTEMPT_TIMEOUT seconds, tried again after RETRY_PAUSES (on a timer, not
holding a worker) on a connection error, a timeout, a 408, 425, 429 or 5xx
(SMTP: any failure but a 5xx refusal): three tries in all. What still fails is
logged as a warning, naming the job and the target. Only http(s) URLs are used, redirects are not
followed (a token is never handed on to another host).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import weakref
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from apiary.plugins.api import SECRET_NAME, ApiaryError, ConfigProblem, PluginContext

config_schema = {
    "targets": {"type": "list", "items": "dict", "required": True,
                "help": "where to tell: [{type: webhook|slack|email, when: [failure, fixed, always], "
                        "branches: [patterns], url or url_secret, token_secret (webhook); host, port, security, "
                        "username, password_secret, from, to (email)}]"},
}

WHENS = ("failure", "fixed", "always")
DEFAULT_WHEN = ("failure", "fixed")
TYPES = ("webhook", "slack", "email")
SECURITIES = {"starttls": 587, "tls": 465, "none": 25}
FAILED = {"failed", "errored"}
FINAL = {"passed", "failed", "errored", "cancelled"}
MAX_TARGETS = 20
MAX_URL = 2048  # characters of a receiver's address (what browsers and servers commonly take)
MAX_RECIPIENTS = 50
ATTEMPT_TIMEOUT = 10.0  # seconds per attempt (connect, send, answer)
RETRY_PAUSES = (1.0, 4.0)  # before the second and third attempts: three tries in all
RETRY_STATUSES = {408, 425, 429}  # and every 5xx
WORKERS = 8  # deliveries being tried at once, per queen
MAX_PENDING = 1000  # deliveries waiting; beyond, dropped (logged): a dead receiver cannot fill the queen's memory
PREVIOUS_SCAN = 50  # jobs of the repository looked through for the previous finished one of the branch
MASK = "***"
MAX_TEXT = 2000  # characters of a command, an error or a commit message in a message

_KEYS = {
    "webhook": {"url", "url_secret", "token_secret"},
    "slack": {"url", "url_secret"},
    "email": {"host", "port", "security", "username", "password_secret", "from", "to"},
}
_COMMON = {"type", "when", "branches", "name"}


@dataclass(frozen=True)
class Target:
    """One validated target of a repository's config; `where` names it in logs (``targets[0] (slack)``)."""

    where: str
    type: str
    when: tuple[str, ...] = DEFAULT_WHEN
    branches: tuple[str, ...] = ()  # empty: every branch
    url: str | None = None
    url_secret: str | None = None
    token_secret: str | None = None
    host: str = ""
    port: int = 587
    security: str = "starttls"
    username: str | None = None
    password_secret: str | None = None
    sender: str = ""
    to: tuple[str, ...] = field(default_factory=tuple)

    @property
    def secrets(self) -> list[str]:
        """The names of the repository secrets this target reads."""
        return [s for s in (self.url_secret, self.token_secret, self.password_secret) if s]


# -- config -----------------------------------------------------------------------------------------

def _http_url(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigProblem(key, "must be an http(s) address")
    if len(value) > MAX_URL or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigProblem(key, f"must be one line of at most {MAX_URL} characters, with no control characters")
    problem = url_problem(value.strip())
    if problem:
        raise ConfigProblem(key, f"{problem}, got {value.strip()[:200]!r}")
    if urlsplit(value.strip()).username is not None:
        raise ConfigProblem(key, "holds a user or password: keep the address in a secret and name it with url_secret")
    return value.strip()


def url_problem(url: str) -> str | None:
    """Why `url` is not an address this plugin sends to (None: it is one): http or https with a host."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises ValueError for a port that is not one
    except ValueError:
        return "must be an http(s) address with a valid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) address such as https://hooks.example.com/apiary"
    return None


def _secret_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not SECRET_NAME.match(value):
        raise ConfigProblem(key, f"must be the name of a secret of the repository (letters, digits, _), got {value!r}")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500 or any(c in value for c in "\r\n\0"):
        raise ConfigProblem(key, "must be text on one line (at most 500 characters)")
    return value.strip()


def _address(value: Any, key: str) -> str:
    text = _text(value, key)
    if "@" not in text:
        raise ConfigProblem(key, f"must be an e-mail address, got {text!r}")
    return text


def _strings(value: Any) -> list[Any]:
    """A setting that is one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


def parse_target(raw: Any, where: str) -> Target:
    """One target of the config, checked; raise ConfigProblem naming the field (``targets[1].url``)."""
    if not isinstance(raw, dict):
        raise ConfigProblem(where, "must be a mapping such as {type: slack, url_secret: SLACK_HOOK}")
    kind = raw.get("type")
    if kind not in TYPES:
        raise ConfigProblem(f"{where}.type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    unknown = sorted(set(raw) - _COMMON - _KEYS[kind])
    if unknown:
        raise ConfigProblem(f"{where}.{unknown[0]}",
                            f"unknown setting for a {kind} target (known: {', '.join(sorted(_COMMON | _KEYS[kind]))})")
    label = f"{where} ({_text(raw['name'], f'{where}.name')})" if "name" in raw else f"{where} ({kind})"
    when = raw.get("when", list(DEFAULT_WHEN))
    whens = _strings(when)
    if not whens:
        raise ConfigProblem(f"{where}.when", f"name at least one of {', '.join(WHENS)}")
    for i, w in enumerate(whens):
        if w not in WHENS:
            at = f"{where}.when[{i}]" if isinstance(when, list) else f"{where}.when"
            raise ConfigProblem(at, f"must be one of {', '.join(WHENS)}, got {w!r}")
    branches = raw.get("branches", [])
    patterns = _strings(branches)
    for i, p in enumerate(patterns):
        at = f"{where}.branches[{i}]" if isinstance(branches, list) else f"{where}.branches"
        _text(p, at)
    out: dict[str, Any] = {"where": label, "type": kind, "when": tuple(dict.fromkeys(whens)),
                           "branches": tuple(p.strip() for p in patterns)}
    if kind in ("webhook", "slack"):
        if ("url" in raw) == ("url_secret" in raw):
            raise ConfigProblem(f"{where}.url", "give url or url_secret (a secret holding the address), one of them")
        if "url" in raw:
            out["url"] = _http_url(raw["url"], f"{where}.url")
        else:
            out["url_secret"] = _secret_name(raw["url_secret"], f"{where}.url_secret")
        if "token_secret" in raw:
            out["token_secret"] = _secret_name(raw["token_secret"], f"{where}.token_secret")
        return Target(**out)
    for key in ("host", "from", "to"):
        if key not in raw:
            raise ConfigProblem(f"{where}.{key}", "required for an email target")
    host = _text(raw["host"], f"{where}.host")
    if any(c in host for c in " /@"):
        raise ConfigProblem(f"{where}.host", f"must be a host name or address, got {host!r}")
    security = raw.get("security", "starttls")
    if security not in SECURITIES:
        raise ConfigProblem(f"{where}.security", f"must be one of {', '.join(SECURITIES)}, got {security!r}")
    port = raw.get("port", SECURITIES[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigProblem(f"{where}.port", f"must be a port number (1-65535), got {port!r}")
    recipients = _strings(raw["to"])
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        raise ConfigProblem(f"{where}.to", f"name 1 to {MAX_RECIPIENTS} addresses")
    to = tuple(_address(r, f"{where}.to[{i}]" if isinstance(raw["to"], list) else f"{where}.to")
               for i, r in enumerate(recipients))
    if ("username" in raw) != ("password_secret" in raw):
        raise ConfigProblem(f"{where}.password_secret" if "username" in raw else f"{where}.username",
                            "username and password_secret go together")
    out.update(host=host, port=port, security=security, sender=_address(raw["from"], f"{where}.from"), to=to)
    if "username" in raw:
        out["username"] = _text(raw["username"], f"{where}.username")
        out["password_secret"] = _secret_name(raw["password_secret"], f"{where}.password_secret")
    return Target(**out)


def parse_targets(config: dict[str, Any]) -> list[Target]:
    """Every target of a repository's config, checked (ConfigProblem names the first fault)."""
    targets = config.get("targets")
    if not isinstance(targets, list) or not targets:
        raise ConfigProblem("targets", "name at least one target")
    if len(targets) > MAX_TARGETS:
        raise ConfigProblem("targets", f"at most {MAX_TARGETS} targets")
    return [parse_target(raw, f"targets[{i}]") for i, raw in enumerate(targets)]


def check_config(config: dict[str, Any]) -> None:
    parse_targets(config)


def queen_secrets(config: dict[str, Any]) -> set[str]:
    """The secrets a repository's config names: they stay on the queen (jobs are not given them)."""
    try:
        return {name for t in parse_targets(config) for name in t.secrets}
    except ConfigProblem:
        return set()


# -- deciding (pure) ------------------------------------------------------------------------------------

def branch_of(job: dict[str, Any]) -> str:
    """The branch a job is of: its ref's branch, a pull request's head branch, else the ref it fetched."""
    ref = job.get("ref") or {}
    trigger = job.get("trigger") or {}
    return str(ref.get("branch") or trigger.get("head_branch") or ref.get("fetch") or "")


def fires(when: tuple[str, ...] | list[str], status: str, previous: str | None) -> str | None:
    """The first of `when` that a job ending `status` fires, given the `previous` finished job's status of
    its repository and branch (None: there is none); None if no notification is due."""
    for w in when:
        if w == "always" and status in FINAL:
            return w
        if w == "failure" and status in FAILED:
            return w
        if w == "fixed" and status == "passed" and previous in FAILED:
            return w
    return None


def branch_matches(target: Target, branch: str) -> bool:
    return not target.branches or any(fnmatch.fnmatchcase(branch, p) for p in target.branches)


def wants_previous(targets: list[Target], status: str, branch: str) -> bool:
    """Whether deciding needs the previous job's status (a passed job and a `fixed` target of its branch)."""
    return status == "passed" and any("fixed" in t.when and branch_matches(t, branch) for t in targets)


def chosen(targets: list[Target], status: str, branch: str, previous: str | None) -> list[tuple[Target, str]]:
    """The targets told of a job ending `status` on `branch`, each with the event that fired it."""
    out = []
    for t in targets:
        if branch_matches(t, branch) and (event := fires(t.when, status, previous)) is not None:
            out.append((t, event))
    return out


def previous_status(job: dict[str, Any], earlier: list[dict[str, Any]]) -> str | None:
    """The status of the newest job of `earlier` (newest first) of `job`'s branch that finished with a verdict
    on its code (passed, failed or errored; a cancelled one is passed over), or None."""
    branch = branch_of(job)
    for other in earlier:
        if other.get("_id") != job.get("_id") and branch_of(other) == branch and other.get("status") in (
                FAILED | {"passed"}):
            return str(other["status"])
    return None


# -- what is said -----------------------------------------------------------------------------------------

def failure_of(job: dict[str, Any]) -> dict[str, Any] | None:
    """The failed stage and command, as the job page says (apiary.core.outcome), or None.

    The one import of Apiary beyond the plugin API: this plugin runs on the queen, where it is there.
    """
    if job.get("status") not in FAILED | {"cancelled"}:
        return None
    try:
        from apiary.core.outcome import job_outcome
        failure = job_outcome(job, [])["failure"]
    except Exception:  # a job stored by another version: said without it
        return None
    if not failure or not failure.get("stage"):
        return None
    out = {k: failure.get(k) for k in ("stage", "title", "command", "exitCode")}
    if isinstance(out["command"], str) and len(out["command"]) > MAX_TEXT:  # a whole script as one step
        out["command"] = out["command"][:MAX_TEXT] + "…"
    return out


def facts(job: dict[str, Any], event: str, url: str) -> dict[str, Any]:
    """What a notification says of `job` (the webhook's JSON body)."""
    started, finished = job.get("started"), job.get("finished")
    duration = round(finished - started, 3) if isinstance(started, (int, float)) and isinstance(
        finished, (int, float)) else None
    commit = job.get("commit") or {}
    return {
        "event": event, "repo": job.get("repo"), "number": job.get("number"), "id": job.get("_id"),
        "status": job.get("status"), "type": job.get("type"), "branch": branch_of(job) or None,
        "commit": (job.get("ref") or {}).get("id"),
        "message": _cut((str(commit.get("message") or "").strip().splitlines() or [None])[0]),
        "triggered_by": job.get("triggered_by"), "duration": duration, "url": url,
        "error": _cut(job.get("error")) if job.get("error") != job.get("status") else None,
        "failure": failure_of(job), "started": started, "finished": finished,
    }


def _cut(text: Any) -> Any:
    return text[:MAX_TEXT] + "…" if isinstance(text, str) and len(text) > MAX_TEXT else text


def summary(f: dict[str, Any]) -> str:
    """One line: ``app #12 failed on main (3f2a9c1) in 42 s``."""
    line = f"{f['repo']} #{f['number']} {f['status']}"
    if f.get("branch"):
        line += f" on {f['branch']}"
    if f.get("commit"):
        line += f" ({str(f['commit'])[:7]})"
    if f.get("duration") is not None:
        line += f" in {_seconds(f['duration'])}"
    return line


def _seconds(s: float) -> str:
    s = round(s)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def _why(f: dict[str, Any]) -> str | None:
    failure = f.get("failure")
    if failure:
        code = f", exit code {failure['exitCode']}" if failure.get("exitCode") is not None else ""
        return f"stage {failure['stage']}: {failure.get('title') or failure.get('command')}{code}"
    return f.get("error")


def _who(f: dict[str, Any]) -> str | None:
    """Who or what triggered the job: ``ada (user)``, ``github (webhook)``."""
    by = f.get("triggered_by")
    if not isinstance(by, dict) or not (by.get("name") or by.get("kind")):
        return None
    name, kind = str(by.get("name") or ""), str(by.get("kind") or "")
    return f"{name} ({kind})" if name and kind else name or kind


def email_text(f: dict[str, Any]) -> tuple[str, str]:
    """The subject and plain-text body of an e-mail about the job."""
    subject = f"[apiary] {f['repo']} #{f['number']} {f['status']}" + (f" on {f['branch']}" if f.get("branch") else "")
    if f["event"] == "fixed":
        subject += " (fixed)"
    lines = [summary(f) + ".", "", f"Job: {f['url']}"]
    for label, value in (("Why", _why(f)), ("Commit", f.get("commit")), ("Message", f.get("message")),
                         ("Triggered by", _who(f))):
        if value:
            lines.append(f"{label}: {value}")
    return subject.replace("\n", " ")[:250], "\n".join(lines) + "\n"


def _escape(text: Any) -> str:
    """Text for Slack's mrkdwn: &, < and > escaped (no links or mentions from the job's people), @ defused."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u200b")


def slack_body(f: dict[str, Any]) -> dict[str, Any]:
    """An incoming webhook's body: ``text`` (Mattermost, Rocket.Chat, Slack's notification) and ``blocks``."""
    mark = {"passed": ":white_check_mark:", "cancelled": ":no_entry_sign:"}.get(f["status"], ":x:")
    fixed = " (fixed)" if f["event"] == "fixed" else ""
    text = f"{mark} {_escape(summary(f))}{fixed}: {f['url']}"
    why = _why(f)
    detail = f"{mark} *<{f['url']}|{_escape(f['repo'])} #{f['number']}>* {_escape(f['status'])}{fixed}"
    if f.get("branch"):
        detail += f" on `{_escape(f['branch'])}`"
    if why:
        text += f"\n{_escape(why)}"
        detail += f"\n{_escape(why)}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": detail}}]}


def mask(text: str, secrets: list[str]) -> str:
    """`text` with every secret's value replaced by ***."""
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


# -- sending ------------------------------------------------------------------------------------------------

class Permanent(ApiaryError):
    """A refusal that another try would not change (a 4xx, an SMTP 5xx)."""


@dataclass
class Delivery:
    """One message for one target, ready to send; `secrets` are the values to mask in anything logged."""

    label: str  # "job app #3 (ID) to targets[0] (slack)"
    target: Target
    body: dict[str, Any]
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    secrets: list[str] = field(default_factory=list)
    attempts: int = 0  # tries so far


_outboxes: weakref.WeakKeyDictionary[Any, asyncio.Queue[Delivery]] = weakref.WeakKeyDictionary()


def _outbox(ctx: PluginContext) -> asyncio.Queue[Delivery]:
    box = _outboxes.get(ctx)
    if box is None:
        box = _outboxes[ctx] = asyncio.Queue(MAX_PENDING)
    return box


async def job_done(job: dict[str, Any], ctx: PluginContext) -> None:
    """Decide who is told of `job` and queue the messages (sent by `background`); returns at once."""
    repo = await ctx.repo(job["repo"])
    config = ctx.config_of(repo) if repo else None
    if config is None:
        return
    try:
        targets = parse_targets(config)
    except ConfigProblem as exc:  # stored before a check existed: say so, send nothing
        ctx.log.warning("repository %s: notify config refused: %s", job["repo"], exc)
        return
    status, branch = str(job.get("status")), branch_of(job)
    previous = None
    if wants_previous(targets, status, branch):
        try:
            earlier = await ctx.jobs(job["repo"], branch=branch or None, before=job["_id"], limit=PREVIOUS_SCAN)
        except Exception as exc:  # the store is away: no "fixed" this time, the rest still goes out
            ctx.log.warning("job %s: the previous job of %s not found: %s", job["_id"], branch, exc)
            earlier = []
        previous = previous_status(job, earlier)
    due = chosen(targets, status, branch, previous)
    if not due:
        return
    name = f"job {job['repo']} #{job.get('number')} ({job['_id']})"
    for target, event in due:
        delivery = await _prepare(job, target, event, name, ctx)
        if delivery is None:
            continue
        try:
            _outbox(ctx).put_nowait(delivery)
        except asyncio.QueueFull:
            ctx.log.warning("%s: not sent: %d notifications are waiting already", delivery.label, MAX_PENDING)


async def _prepare(job: dict[str, Any], target: Target, event: str, name: str,
                   ctx: PluginContext) -> Delivery | None:
    label = f"{name} to {target.where}"
    values = {}
    for secret in target.secrets:
        value = await ctx.secret(job["repo"], secret)
        if not value:
            ctx.log.warning("%s: not sent: the secret %s is not set", label, secret)
            return None
        values[secret] = value
    f = facts(job, event, ctx.job_url(job))
    delivery = Delivery(label, target, f, secrets=list(values.values()))
    if target.type == "email":
        delivery.password = values.get(target.password_secret or "")
        return delivery
    url = (target.url or values[target.url_secret or ""]).strip()
    if url_problem(url):
        where = f"the secret {target.url_secret}" if target.url_secret else "url"
        ctx.log.warning("%s: not sent: %s does not hold an http(s) address", label, where)
        return None
    delivery.url = url
    delivery.headers = {"Content-Type": "application/json", "X-Apiary-Event": event}
    if target.token_secret:
        delivery.headers["Authorization"] = f"Bearer {values[target.token_secret]}"
    if target.type == "slack":
        delivery.body = slack_body(f)
    return delivery


async def background(ctx: PluginContext) -> None:
    """Send what `job_done` queued, WORKERS at a time, for as long as the queen runs.

    A worker holds a delivery only while it tries: one to try again waits on a timer, outside the workers,
    so that a receiver that fails (or hangs, ATTEMPT_TIMEOUT a try) does not hold up the others' messages.
    """
    box = _outbox(ctx)
    loop = asyncio.get_running_loop()

    def again(delivery: Delivery) -> None:
        try:
            box.put_nowait(delivery)
        except asyncio.QueueFull:
            ctx.log.warning("%s: not sent: %d notifications are waiting already", delivery.label, MAX_PENDING)

    async def work() -> None:
        while True:
            delivery = await box.get()
            try:
                pause = await attempt(delivery, ctx)
            except Exception as exc:  # a bug here must not stop the worker
                pause = None
                ctx.log.warning("%s: not sent: %s", delivery.label,
                                mask(f"{type(exc).__name__}: {exc}", delivery.secrets))
            finally:
                box.task_done()
            if pause is not None:
                loop.call_later(pause, again, delivery)

    await asyncio.gather(*(work() for _ in range(WORKERS)))


async def attempt(delivery: Delivery, ctx: PluginContext) -> float | None:
    """Try to send `delivery` once and log what happened; the seconds to wait before trying again, or None
    (sent, refused for good, or its len(RETRY_PAUSES) + 1 tries are spent)."""
    send = _send_email if delivery.target.type == "email" else _post
    delivery.attempts += 1
    tries = len(RETRY_PAUSES) + 1
    try:
        await asyncio.wait_for(send(delivery, ctx), ATTEMPT_TIMEOUT)
    except Permanent as exc:
        ctx.log.warning("%s: not sent: %s", delivery.label, mask(str(exc), delivery.secrets))
        return None
    except TimeoutError:
        problem = f"no answer in {ATTEMPT_TIMEOUT:g} s"
    except Exception as exc:  # connection errors, 5xx, SMTP trouble: worth another try
        problem = mask(str(exc) or type(exc).__name__, delivery.secrets)
    else:
        ctx.log.info("%s: sent%s", delivery.label,
                     f" (attempt {delivery.attempts})" if delivery.attempts > 1 else "")
        return None
    if delivery.attempts >= tries:
        ctx.log.warning("%s: not sent after %d attempts: %s", delivery.label, tries, problem)
        return None
    ctx.log.info("%s: attempt %d failed: %s", delivery.label, delivery.attempts, problem)
    return RETRY_PAUSES[delivery.attempts - 1]


async def _post(delivery: Delivery, ctx: PluginContext) -> None:
    assert delivery.url is not None
    body = json.dumps(delivery.body, default=str).encode()
    try:
        async with ctx.http.post(delivery.url, data=body, headers=delivery.headers, allow_redirects=False,
                                 timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)) as resp:
            if 200 <= resp.status < 300:
                return
            text = (await resp.content.read(300)).decode(errors="replace").strip()
            problem = f"answered {resp.status}" + (f": {text}" if text else "")
            if resp.status >= 500 or resp.status in RETRY_STATUSES:
                raise ConnectionError(problem)
            raise Permanent(problem)
    except aiohttp.InvalidURL:
        raise Permanent("not an address aiohttp can use") from None
    except aiohttp.ClientError as exc:
        raise ConnectionError(str(exc) or type(exc).__name__) from None


def email_message(delivery: Delivery) -> EmailMessage:
    target = delivery.target
    subject, text = email_text(delivery.body)
    message = EmailMessage()
    message["From"] = target.sender
    message["To"] = ", ".join(target.to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="apiary")
    message["X-Apiary-Event"] = delivery.body["event"]
    message.set_content(text)
    return message


async def _send_email(delivery: Delivery, ctx: PluginContext) -> None:
    import aiosmtplib  # the queen's dependency; imported here so that the plugin's checks need nothing else

    target = delivery.target
    try:
        await aiosmtplib.send(email_message(delivery), hostname=target.host, port=target.port,
                              username=target.username, password=delivery.password,
                              use_tls=target.security == "tls", start_tls=target.security == "starttls",
                              timeout=ATTEMPT_TIMEOUT)
    except aiosmtplib.SMTPResponseException as exc:
        problem = f"the SMTP server answered {exc.code}: {exc.message}"
        if exc.code >= 500:
            raise Permanent(problem) from None
        raise ConnectionError(problem) from None
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise Permanent(f"recipients refused: {exc}") from None
