"""The after plugin: a job of this repository when a job of another one passes.

A repository's config::

    {"repos": ["libfoo", "libbar"],     # upstream repositories (required)
     "upstream_branch": "main",         # only their jobs on this branch (a shell pattern: release/*); default any
     "branch": "main",                  # the branch built here; default this repository's default_branch
     "type": "TEST",                    # TEST, DEPLOY or TEST_DEPLOY
     "parameters": {"UPSTREAM": "libfoo"}}

When a job of an upstream repository passes, each repository that lists it
gets a job whose trigger has type ``after``, ``url`` the upstream job's page
and ``source`` {job, repo, number, chain}. ``chain`` holds the repositories
that led here, oldest first: the upstream job's own chain when ``after``
triggered it too, then the upstream repository. A repository already in the
chain is not triggered again (logged), so a loop (a after b, b after a) ends
after one round. A job the queen refuses (a missing required parameter, a
branch git cannot find) is logged.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from apiary.plugins.api import ConfigProblem, PluginContext, TriggerRefused
from apiary.plugins.schedule import check_parameters

config_schema = {
    "repos": {"type": "list", "items": "str", "required": True,
              "help": "upstream repositories whose passing jobs trigger a job here"},
    "upstream_branch": {"type": "str", "help": "only upstream jobs of this branch (shell pattern); default any"},
    "branch": {"type": "str", "help": "the branch to build here; default the repository's default_branch"},
    "type": {"type": "str", "default": "TEST", "choices": ["TEST", "DEPLOY", "TEST_DEPLOY"]},
    "parameters": {"type": "dict", "default": {}, "help": "parameters of the job, NAME: value"},
}

PASSED = "passed"


def check_config(config: dict[str, Any]) -> None:
    if not config["repos"]:
        raise ConfigProblem("repos", "name at least one upstream repository")
    for i, name in enumerate(config["repos"]):
        if not name.strip():
            raise ConfigProblem(f"repos[{i}]", "must be a repository name")
    for key in ("upstream_branch", "branch"):
        if key in config and not config[key].strip():
            raise ConfigProblem(key, "must be a branch name")
    check_parameters(config.get("parameters"), "parameters")


def chain_of(job: dict[str, Any]) -> list[str]:
    """The repositories that led to `job`, ending with its own: what a job it triggers carries on."""
    source = (job.get("trigger") or {}).get("source") or {}
    chain = source.get("chain") if source.get("plugin") == "after" else None
    earlier = [str(r) for r in chain] if isinstance(chain, list) else []
    return [*earlier, job["repo"]]


def watches(config: dict[str, Any], job: dict[str, Any]) -> bool:
    """Whether a repository with this `after` config reacts to upstream `job` (of any status)."""
    if job["repo"] not in (config.get("repos") or []):
        return False
    pattern = config.get("upstream_branch")
    if not pattern:
        return True
    branch = (job.get("ref") or {}).get("branch")
    return isinstance(branch, str) and fnmatch.fnmatchcase(branch, pattern)


async def job_done(job: dict[str, Any], ctx: PluginContext) -> None:
    """Trigger the repositories that follow `job`'s repository, if it passed."""
    if job.get("status") != PASSED:
        return
    chain = chain_of(job)
    upstream, number = job["repo"], job.get("number")
    for repo, config in await ctx.repos():
        if not watches(config, job):
            continue
        name = repo["_id"]
        if name in chain:
            ctx.log.info("repository %s not triggered after %s #%s: already in the chain %s", name, upstream,
                         number, " -> ".join(chain))
            continue
        try:
            parameters = check_parameters(config.get("parameters"), "parameters")
            queued = await ctx.trigger(
                repo, branch=config.get("branch"), job_type=config.get("type") or "TEST", parameters=parameters,
                trigger={"type": "after", "message": f"after {upstream} #{number} passed", "url": ctx.job_url(job),
                         "author": {"name": "after"}},
                source={"job": job["_id"], "repo": upstream, "number": number, "chain": chain})
        except (TriggerRefused, ConfigProblem) as exc:
            ctx.log.warning("repository %s not triggered after %s #%s: %s", name, upstream, number, exc)
            continue
        ctx.log.info("repository %s: job #%s queued after %s #%s (%s)", name, queued.get("number"), upstream,
                     number, queued["_id"])
