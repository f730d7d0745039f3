"""`apiary repo add|ls|show`: repositories through the queen's API (POST/PUT /repos, GET /repos[/NAME]).

`repo_body` (pure) turns the flags into the API's settings; the queen checks them
(apiary.queen.repos) and its refusal, naming the field, is what the user sees.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say
from apiary.core.errors import ApiaryError, InputError

if TYPE_CHECKING:
    from apiary.cli.client import Client


async def repo(client: Client, args: argparse.Namespace) -> int:
    """apiary repo ACTION: the action's exit status."""
    return await {"add": add, "ls": ls, "show": show}[args.action](client, args)


def repo_body(name: str, url: str | None, pipeline_text: str | None, pipeline_file: str | None,
              default_branch: str | None, provider: str | None, plugins: list[str]) -> dict[str, Any]:
    """The API's settings for `apiary repo add`: only what was given (the queen fills in its defaults).

    A pipeline given as text is stored on the queen (pipeline_source "queen"); else it is read from the
    repository at each job's commit (pipeline_source "repo", which needs `url`)."""
    if pipeline_text is None and not url:
        raise InputError("give --url (the pipeline is read from the repository) or --pipeline FILE "
                         "(the pipeline is kept on the queen), or both", field="url")
    if pipeline_text is not None and pipeline_file:
        raise InputError("--pipeline keeps the pipeline on the queen; --pipeline-file names one in the "
                         "repository: give one of them", field="pipeline_file")
    body: dict[str, Any] = {"name": name}
    if url:
        body["url"] = url
    if pipeline_text is not None:
        body["pipeline_source"], body["pipeline"] = "queen", pipeline_text
    else:
        body["pipeline_source"] = "repo"
        if pipeline_file:
            body["pipeline_file"] = pipeline_file
    if default_branch:
        body["default_branch"] = default_branch
    if provider:
        body["provider"] = provider
    if plugins:
        body["plugins"] = list(plugins)
    return body


async def add(client: Client, args: argparse.Namespace) -> int:
    """apiary repo add: register a repository (or, with --replace, set the settings of one)."""
    from apiary.cli.client import ApiError, q

    text = None
    if args.pipeline:
        try:
            text = Path(args.pipeline).read_text(encoding="utf-8")
        except OSError as exc:
            raise ApiaryError(f"--pipeline: cannot read {args.pipeline}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ApiaryError(f"--pipeline: {args.pipeline} is not UTF-8 text") from None
    body = repo_body(args.name, args.repo_url, text, args.pipeline_file, args.default_branch, args.provider,
                     args.plugin)
    try:
        if args.replace:
            made = await client.request("PUT", f"/repos/{q(args.name)}", body)
        else:
            made = await client.request("POST", "/repos", body)
    except ApiError as exc:
        if exc.status == 409:
            raise ApiaryError(f"{exc} (apiary repo show {args.name} shows it; --replace sets new settings)") from None
        raise
    where = ("kept on the queen" if made["pipeline_source"] == "queen"
             else f"read from {made['pipeline_file']} at each job's commit")
    say(f"{made['name']}: pipeline {where}; default branch {made['default_branch']}")
    say(f"  trigger a job: apiary trigger {made['name']} --follow")
    say(f"  its page:      {client.url}/repos/{q(made['name'])}")
    return 0


async def ls(client: Client, args: argparse.Namespace) -> int:
    """apiary repo ls: the registered repositories, as a table."""
    from apiary.cli.follow import table

    repos = (await client.request("GET", "/repos"))["repos"]
    if not repos:
        say("no repositories yet: apiary repo add NAME --url GIT_URL (or --pipeline FILE)")
        return 0
    rows = [[r["name"], _pipeline_text(r), r.get("default_branch") or "-", r.get("url") or "-",
             ",".join(_plugin_names(r)) or "-"] for r in sorted(repos, key=lambda r: r["name"])]
    say(table(["NAME", "PIPELINE", "BRANCH", "URL", "PLUGINS"], rows))
    return 0


async def show(client: Client, args: argparse.Namespace) -> int:
    """apiary repo show: one repository's settings, the names of its secrets (never their values)."""
    from apiary.cli.client import ApiError, q

    found = await client.request("GET", f"/repos/{q(args.name)}")
    try:
        secrets = (await client.request("GET", f"/repos/{q(args.name)}/secrets"))["secrets"]
    except ApiError as exc:
        if exc.status not in (401, 403):
            raise
        secrets = None  # not ours to see: said so below
    if args.json:
        print(json.dumps({**found, "secrets": secrets}, indent=2, sort_keys=True))
        return 0
    auth = found.get("auth")
    rows = [
        ("name", found["name"]),
        ("url", found.get("url") or "-"),
        ("provider", found.get("provider") or "git"),
        ("default branch", found.get("default_branch") or "main"),
        ("pipeline", _pipeline_text(found)),
        ("auth", f"{auth['type']} with the secret {auth['secret']}" if auth else "-"),
        ("retention", ", ".join(f"{k} {v}" for k, v in (found.get("retention") or {}).items() if v) or "everything"),
        ("plugins", ", ".join(_plugin_names(found)) or "-"),
        ("branches", json.dumps(found["branches"]) if found.get("branches") else "all"),
        ("auto-cancel", "off" if found.get("auto_cancel") is False else "on (a newer push cancels older jobs)"),
        ("debug shells", "on (a failed job's workspace is kept)" if found.get("debug_keep") else "off"),
        ("secrets", "(only admins see them)" if secrets is None else
         ", ".join(s["name"] for s in secrets) or "-"),
        ("page", f"{client.url}/repos/{q(found['name'])}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        say(f"{key + ':':<{width + 1}} {value}")
    pipeline = found.get("pipeline")
    if found.get("pipeline_source") == "queen" and pipeline is not None:
        say("stored pipeline:")
        text = pipeline if isinstance(pipeline, str) else json.dumps(pipeline, indent=2)
        for line in text.rstrip("\n").split("\n"):
            say(f"  {line}")
    return 0


def _pipeline_text(repo: dict[str, Any]) -> str:
    return "on the queen" if repo.get("pipeline_source") == "queen" else repo.get("pipeline_file") or ".apiary.yml"


def _plugin_names(repo: dict[str, Any]) -> list[str]:
    return [p if isinstance(p, str) else str(p.get("name")) for p in repo.get("plugins") or []]
