"""A repository's settings: what the API accepts, what it shows, whose credentials.

    name            letters, digits, '.', '_', '-' (the URL path segment)
    url             where drones (and the queen, for .apiary.yml) fetch the code
    provider        git, github, gitlab… (for plugins; default git)
    default_branch  the branch a trigger without one builds (default main)
    pipeline_source "repo": .apiary.yml read at the job's commit (the default
                    when a URL is given); "queen": the pipeline stored here
    pipeline_file   the file read from the repository (default .apiary.yml)
    pipeline        the stored pipeline: YAML text or the same as JSON
    auth            {"type": "https", "secret": NAME[, "username": U]} or
                    {"type": "ssh", "secret": NAME}: which repository secret
                    holds the token or the private key
    retention       {"keep_jobs": N, "keep_days": D}: what `prune` keeps
                    (the last passing job of each branch is always kept)
    plugins         the queen-side plugins it uses (webhooks, schedules,
                    reactions): [name or {"name", "config"}], each config
                    checked against the plugin's schema
    branches        {"include": [pattern], "exclude": [pattern]}: which
                    branches a push or pull request may trigger (shell-style
                    patterns such as release/*; exclude wins)
    pull_request_secrets  true: pull requests from the repository's own
                    branches get the secrets pushes get (default false: none;
                    from forks never; see queen/trust.py)
    deploy_tags     true: a forge's tag push starts a deploying job (the
                    github/gitlab plugin's tag_type, TEST_DEPLOY by default);
                    false (the default): a TEST job, so no tag deploys unasked
    auto_cancel     true (the default): a newer push to a branch, or to a pull
                    request, cancels its older jobs still queued or running
                    (apiary.core.concurrency); false keeps them
    debug_keep      true: a failed job's workspace stays on its drone for a
                    debug shell (apiary.core.debug), as a pipeline's
                    ``debug: {keep: true}`` asks; default false

Secrets themselves are set apart (PUT /repos/{repo}/secrets/{NAME}) and are
never shown back.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apiary.core.errors import BadRequest, GitError
from apiary.core.fields import ENV_NAME, get_number, get_str, no_unknown
from apiary.core.models import Pipeline, RepoAuth, Repository, Retention
from apiary.core.pipeline import load_pipeline, parse_pipeline
from apiary.core.refs import check_url

if TYPE_CHECKING:
    from apiary.queen.plugin_registry import Plugins

REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
FIELDS = {"name", "url", "provider", "default_branch", "pipeline", "pipeline_source", "pipeline_file", "auth",
          "retention", "plugins", "branches", "pull_request_secrets", "deploy_tags",
          "auto_cancel", "debug_keep"}
SOURCES = ("repo", "queen")
RESERVED = {"new"}


def repo_from_body(body: dict[str, Any], name: str | None = None, *, plugins: Plugins) -> Repository:
    """Validated settings from an API body; `name` comes from the URL for PUT."""
    no_unknown(body, FIELDS)
    if name is None:
        name = get_str(body, "name", required=True, pattern=REPO_NAME)
    if name in RESERVED:
        raise BadRequest(f"name: {name!r} is reserved (the dashboard's /repos/{name} page)", field="name")
    elif "name" in body and body["name"] != name:
        raise BadRequest(f"name: {body['name']!r} differs from the name in the URL ({name!r})", field="name")
    url = get_str(body, "url", "") or ""
    if url:
        _check_url(url)
    pipeline = body.get("pipeline")
    source = get_str(body, "pipeline_source", "queen" if pipeline is not None else "repo")
    if source not in SOURCES:
        raise BadRequest(f"pipeline_source: must be one of {', '.join(SOURCES)}", field="pipeline_source")
    if source == "queen" and pipeline is None:
        raise BadRequest("pipeline: required when pipeline_source is queen", field="pipeline")
    if source == "repo" and not url:
        raise BadRequest("url: required when the pipeline is read from the repository", field="url")
    if isinstance(pipeline, str):
        load_pipeline(pipeline, "pipeline")  # validated now; stored as written, with its comments
    elif pipeline is not None:
        pipeline = parse_pipeline(pipeline)
    now = time.time()
    return {
        "_id": name,
        "url": url,
        "provider": get_str(body, "provider", "git"),
        "default_branch": get_str(body, "default_branch", "main") or "main",
        "pipeline_source": source,
        "pipeline_file": get_str(body, "pipeline_file", ".apiary.yml"),
        "pipeline": pipeline,
        "auth": _auth(body.get("auth")),
        "retention": _retention(body.get("retention")),
        "plugins": plugins.check_settings(body.get("plugins")),
        "branches": _branches(body.get("branches")),
        "pull_request_secrets": _flag(body, "pull_request_secrets"),
        "deploy_tags": _flag(body, "deploy_tags"),
        "auto_cancel": _flag(body, "auto_cancel", True),
        "debug_keep": _flag(body, "debug_keep"),
        "created": now,
        "updated": now,
    }


def stored_pipeline(repo: Repository) -> Pipeline:
    """The repository's stored pipeline, compiled."""
    pipeline = repo.get("pipeline")
    if isinstance(pipeline, str):
        return load_pipeline(pipeline, "pipeline")
    return parse_pipeline(pipeline)


def _auth(value: Any) -> RepoAuth | None:
    value = _object(value, "auth", {"type", "secret", "username"}, "type and secret")
    if value is None:
        return None
    kind = value.get("type")
    if kind not in ("https", "ssh"):
        raise BadRequest("auth.type: must be https (a token) or ssh (a private key)", field="auth.type")
    secret = get_str(value, "secret", required=True, pattern=ENV_NAME, prefix="auth.")
    auth: RepoAuth = {"type": kind, "secret": secret}
    username = get_str(value, "username", prefix="auth.")
    if username:
        auth["username"] = username
    return auth


def _flag(body: dict[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"{name}: must be true or false", field=name)
    return value


def _object(value: Any, name: str, keys: set[str], what: str) -> dict[str, Any] | None:
    """An optional settings object `name` with only `keys`, or None when not given."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: must be an object with {what}", field=name)
    no_unknown(value, keys, f"{name}.")
    return value


def _retention(value: Any) -> Retention:
    value = _object(value, "retention", {"keep_jobs", "keep_days"}, "keep_jobs and/or keep_days")
    if value is None:
        return {}
    out: Retention = {}
    keep_jobs = get_number(value, "keep_jobs", low=1, integer=True, prefix="retention.")
    keep_days = get_number(value, "keep_days", low=0.001, prefix="retention.")
    if keep_jobs is not None:
        out["keep_jobs"] = keep_jobs
    if keep_days is not None:
        out["keep_days"] = keep_days
    return out


def _branches(value: Any) -> dict[str, list[str]]:
    value = _object(value, "branches", {"include", "exclude"}, "include and/or exclude patterns")
    if value is None:
        return {}
    out = {}
    for key in ("include", "exclude"):
        patterns = value.get(key)
        if patterns is None:
            continue
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",")]
        if not isinstance(patterns, list) or not all(isinstance(p, str) and p.strip() for p in patterns):
            raise BadRequest(f"branches.{key}: must be a list of branch patterns such as main or release/*",
                             field=f"branches.{key}")
        out[key] = [p.strip() for p in patterns if p.strip()]
    return out


def public_repo(doc: Repository) -> dict[str, Any]:
    return {"name": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}


def repo_auth(repo: Repository, secrets: dict[str, str]) -> dict[str, Any] | None:
    """The credentials for the repository's URL, taken from its secrets (or None)."""
    auth = repo.get("auth")
    if not auth:
        return None
    value = secrets.get(auth["secret"])
    if value is None:
        raise BadRequest(f"auth.secret: the repository has no secret {auth['secret']!r}; set it first",
                         field="auth.secret")
    out: dict[str, Any] = {"type": auth["type"], "token" if auth["type"] == "https" else "key": value}
    if auth.get("username"):
        out["username"] = auth["username"]
    return out


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        raise BadRequest(f"url: {url!r} is not a URL", field="url") from None
    if password is not None:
        raise BadRequest("url: credentials do not belong in the URL, where every job would show them; "
                         "put the token in a secret and name it in auth", field="url")
    try:
        check_url(url)
    except GitError as exc:
        raise BadRequest(f"url: {exc}", field="url") from None
