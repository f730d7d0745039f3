"""Making jobs: from a request (apiary.core.jobrequest: the API, a re-run, a plugin) to a stored, queued job.

`create_job` resolves what the job will run before anything is stored: the
pipeline — the one stored on the queen, or ``.apiary.yml`` read at the job's
commit (the repository's ``pipeline_source`` chooses) — and the parameters it
declares. A pipeline that does not parse or validate, a missing required
parameter or a ref git cannot find is refused with an InputError naming the
file, line and field; no such job is stored, none reaches a drone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ulid

from apiary.core import debug
from apiary.core.context import TriggeredBy, commit_facts
from apiary.core.errors import BadRequest, GitError
from apiary.core.jobstate import JobState
from apiary.core.models import Job, JobRequest, Pipeline, Ref, Repository
from apiary.core.pipeline import load_pipeline
from apiary.core.refs import parse_ref
from apiary.core.stages import plugin_keys, resolve_parameters
from apiary.queen.dispatcher import Dispatcher
from apiary.queen.gitread import read_at_ref, read_commit
from apiary.queen.jobrules import job_rules, supersede
from apiary.queen.repos import repo_auth, stored_pipeline
from apiary.queen.store import Store
from apiary.queen.trust import given_secrets, job_kind

if TYPE_CHECKING:
    from apiary.queen.plugin_registry import Plugins


async def resolve_pipeline(store: Store, git_cache: Path, repo: Repository, ref: Ref) -> tuple[Pipeline, Ref]:
    """The pipeline the job runs and its ref (with the commit id when read from the repository)."""
    if repo.get("pipeline_source") == "queen":
        if repo.get("url"):
            try:
                parse_ref(ref)  # the drone will check it out: refuse what git would refuse now
            except GitError as exc:
                raise BadRequest(f"ref: {exc}", field="ref") from None
        return stored_pipeline(repo), ref
    if not repo.get("url"):
        raise BadRequest("url: the pipeline is read from the repository, which has no URL", field="url")
    auth = repo_auth(repo, await store.secret_values(repo["_id"]))
    filename = repo.get("pipeline_file") or ".apiary.yml"
    try:
        sha, text = await read_at_ref(git_cache, repo["url"], ref, auth, filename)
    except GitError as exc:
        raise BadRequest(f"ref: {exc}", field="ref") from None
    where = ref.get("fetch") or ref.get("branch") or ""
    if text is None:
        raise BadRequest(f"{filename}: not found at {where} ({sha[:12]})", field="pipeline")
    resolved: Ref = {**ref, "id": sha}
    return load_pipeline(text, filename), resolved


async def create_job(store: Store, dispatcher: Dispatcher, git_cache: Path, repo: Repository, asked: JobRequest, *,
                     plugins: Plugins, by: TriggeredBy, rerun_of: str | None = None, kind: str | None = None,
                     delivery: str | None = None,
                     resume: Callable[[Pipeline], dict[str, Any]] | None = None,
                     shape: Callable[[Pipeline], Pipeline] | None = None) -> Job:
    """Store and queue the job `asked` for (apiary.core.jobrequest made the request); `kind` (queen/trust.py)
    is its trigger's unless given (a re-run keeps its job's). `by`: who or what asked, as the queen knows
    it (apiary.core.context.triggered_by). `delivery`: the webhook delivery's key (plugin/repository/id),
    unique among jobs: Conflict if a job has it already.

    The job records its commit's message and author (``commit``) from a forge's push payload, else from
    the commit object when the queen read the pipeline at it (its git cache has it); otherwise the
    drone's checkout may report them later (apiary.queen.lifecycle). `resume`: given the pipeline, the
    partial run's ``resume`` (apiary.queen.resume; it may refuse with an InputError). `shape`: given the
    pipeline, the one the job runs (a bisect's: without deploy stages and approval gates; it may refuse
    with an InputError)."""
    pipeline, ref = await resolve_pipeline(store, git_cache, repo, asked["ref"])
    if shape is not None:
        pipeline = shape(pipeline)
    debug.with_repository(pipeline, repo)  # the repository's debug_keep setting, into the job's pipeline
    facts = commit_facts(asked["trigger"])
    if facts is None and ref.get("id") and repo.get("url"):
        facts = commit_facts(asked["trigger"], await read_commit(git_cache, repo["url"], ref["id"]))
    kind = kind or job_kind(asked["trigger"])
    # Configs of plugins the queen has are checked now; drones check the others.
    for i, plugin in enumerate(pipeline.get("plugins") or []):
        plugin["config"] = plugins.check_config(plugin["name"], plugin["config"], f"pipeline.plugins[{i}].config")
    resumed = resume(pipeline) if resume is not None else None  # refused before the job takes a number
    job: Job = {
        "_id": str(ulid.ULID()),
        "repo": repo["_id"],
        "repo_url": repo.get("url", ""),
        "provider": repo.get("provider", "git"),
        "ref": ref,
        "type": asked["type"],
        "parameters": resolve_parameters(pipeline, asked["parameters"]),
        "trigger": asked["trigger"],
        "triggered_by": by,
        "kind": kind,
        # The names of the secrets it will be given (checked again when it is dispatched).
        "secrets": given_secrets(kind, await store.secret_kinds(repo["_id"]), repo, plugins.queen_secrets(repo)),
        "pipeline": pipeline,
        "plugin_keys": plugin_keys(pipeline),
        **JobState().fields(),  # queued (apiary.core.jobstate decides every status from here on)
        "created": time.time(),
        "commands": {},
        "phases": {},
        "number": await store.next_job_number(repo["_id"]),
    }
    if facts is not None:
        job["commit"] = facts
    if rerun_of:
        job["rerun_of"] = rerun_of
    if delivery:
        job["delivery"] = delivery
    if resumed is not None:
        job["resume"] = resumed
    job.update(await job_rules(store, git_cache, repo, job))  # type: ignore[typeddict-item]  # when:, concurrency:
    await dispatcher.submit(job)
    await supersede(store, dispatcher.cancel, repo, job)  # auto-cancel, cancel_in_progress
    return job
