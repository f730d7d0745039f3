"""Runs one job's pipeline (DESIGN.md §5): phases, stages, hooks, timeouts.

Order of a job:

1. job ``on_start`` hooks;
2. phase ``environment``: the checkout (when the repository has a URL; once
   it is done, ``job:checkout`` reports the commit if the ref named none), then
   the pipeline's environment steps; then phase ``prepare``;
3. phase ``test``: the test stages (not for DEPLOY jobs), independent ones in
   parallel up to ``parallel``, each as: stage ``on_start``, its steps (the
   first failing step fails the stage), stage ``on_success`` / ``on_failure``;
   once a stage fails no new stage starts, and stages that need a failed one
   are skipped; ``job:tested`` carries the phase's exit code;
4. phase ``deploy``: the deploy stages, for DEPLOY and TEST_DEPLOY jobs, and
   only when the test phase passed; ``job:deployed`` carries its exit code;
5. job ``on_success`` / ``on_failure`` hooks; artifacts are collected;
6. phase ``cleanup``, always: after a failure, a timeout or a cancel too.

Hooks' and cleanup's exit codes never change the result. The job timeout,
the output timeout (no output for that long) and a workspace over its cap
(limits.py) kill every running command and fail the job; the finish (5, 6)
then has CLEANUP_GRACE seconds. Cancelling `run()` kills every running
command's process group, skips 5, runs cleanup and ends the job
``cancelled``; a second cancel stops the cleanup too. The executor reports
through ``emit(type, fields)`` only; it knows nothing of sockets or seqs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apiary.core import approvals, partial, retry, spread
from apiary.core.conditions import skipped
from apiary.core.protocol import CANCELLED_LINE, JobStatus, JobType, Msg
from apiary.core.refs import FULL_SHA, secrets_of
from apiary.core.stages import blocked_stages, next_stages, runnable_stages

from .artifacts import ArtifactError
from .caches import JobCaches
from .checkout import checked_out, checkout_plan, shown_commit
from .jobnet import JobNet
from .jobplugins import JobPlugins
from .limits import JobLimits, LogCap, WorkspaceGuard
from .masking import Masker
from .plugins import PluginError, PluginManager
from .restore import GivenFileError, restore
from .sandbox import JobPaths, Sandbox
from .warmbox import WarmBox
from .step import EmitFn, StepRunner
from .testreports import send_reports

log = logging.getLogger(__name__)

# Called after the job's phases, before cleanup: (workspace, globs) -> None
CollectFn = Callable[[Path, list[str]], Awaitable[None]]

# Seconds the finish (job hooks, artifacts, cleanup) may take once the job timed out.
CLEANUP_GRACE = 60.0



class JobRun:
    """One job on this drone. `run()` returns the job's final status."""

    def __init__(self, job: dict[str, Any], workspace: Path, emit: EmitFn, base_env: Mapping[str, str], *,
                 flush_after: float, chunk_bytes: int, private_dir: Path | None,
                 collect: CollectFn | None = None, plugins: PluginManager | None = None,
                 limits: JobLimits | None = None, sandbox: Sandbox | None = None,
                 paths: JobPaths | None = None, job_net: JobNet | None = None, box: WarmBox | None = None,
                 caches: JobCaches | None = None) -> None:
        self.job = job
        self.caches = caches  # the pipeline's `cache:` (drone/caches.py); None: none here
        self.pipeline = job["pipeline"]
        self.workspace = workspace
        self.emit = emit
        self.base_env = base_env
        self.private_dir = private_dir
        self.collect = collect
        secrets = job.get("secrets") or {}
        repo = job.get("repo") or {}
        auth = repo.get("auth") or {}
        # The repository's secrets, its credentials, and their forms on the wire
        # (the token's Basic header, a password in the URL).
        self.masker = Masker([*secrets.values(), *(v for k, v in auth.items() if k in ("token", "key")),
                              *secrets_of(repo.get("url") or "", auth or None)])
        limits = limits or JobLimits()
        self.sandbox = sandbox
        self.paths = paths or JobPaths(workspace, workspace, private_dir)
        self.steps = StepRunner(workspace, self._emit_step, self.masker, flush_after, chunk_bytes,
                                log_cap=LogCap(limits.log_max_bytes), kill_grace=limits.kill_grace,
                                sandbox=sandbox, paths=self.paths, job_net=job_net, box=box)
        self.disk = WorkspaceGuard(workspace, limits.workspace_max_bytes, limits.check_every)
        # A retried job's commands are numbered after its earlier attempts' ones.
        self.steps.num = int(job.get("first_cmd") or 1) - 1
        self._abort: str | None = None
        self._deadline: float | None = None
        self._code = 1
        self._last_phase = "environment"
        self._cancels = 0
        self._cleanup_on_cancel = True
        self._checkout_cleanup: Callable[[], None] | None = None
        self._kept: list[str] | None = None  # the output of the checkout command that shows the commit
        # The job's plugins, and what they contribute once set up: steps per phase, stages, artifacts
        self.plugins = JobPlugins(job, workspace, base_env, emit, self.masker, plugins)
        self._artifacts = list(self.pipeline.get("artifacts") or [])
        self._setup_failed = False  # the drone could not set the job up: the queen may retry it elsewhere
        self._waiting = False  # it reached an approval gate: this attempt ends, the job waits (apiary.core.approvals)
        # What the queen's `when:` verdicts skip: stage -> why, (stage, step from 0) -> why
        self._when_stages, self._when_steps = skipped(job.get("conditions") or [])

    def environment(self) -> dict[str, str]:
        """The job's commands' environment: in a sandbox, a few of the drone's variables and the job's own;
        without (apiary run), the whole environment with the job's over it."""
        job = self.job
        env: dict[str, str] = {}
        env.update({str(k): str(v) for k, v in (self.pipeline.get("env") or {}).items()})
        env.update({
            "CI": "true",
            "APIARY": "true",
            "APIARY_JOB_ID": job["id"],
            "APIARY_JOB_NUMBER": str(job.get("number", "")),
            "APIARY_JOB_TYPE": job.get("type", JobType.TEST.value),
            "APIARY_JOB_ATTEMPT": str(job.get("attempt", 1)),
            "APIARY_REPO": (job.get("repo") or {}).get("name", ""),
            "APIARY_BRANCH": (job.get("ref") or {}).get("branch", "") or "",
            "APIARY_COMMIT": (job.get("ref") or {}).get("id", "") or "",
            "APIARY_WORKSPACE": str(self.workspace),
        })
        env.update({k: str(v) for k, v in (job.get("parameters") or {}).items()})
        env.update({k: str(v) for k, v in (job.get("secrets") or {}).items()})
        if self.sandbox is not None:
            return self.sandbox.environment(env, self.base_env, self.paths)
        return {**self.base_env, **env}

    async def run(self) -> str:
        started = time.monotonic()
        timeout = self.pipeline.get("timeout")
        self._deadline = started + timeout if timeout else None
        self.emit(Msg.JOB_STARTED, {"timestamp": time.time()})
        env = self.environment()
        watchdog = asyncio.create_task(self._watchdog(asyncio.current_task()))
        try:
            outcome = await self._guarded(self._phases(env))
            status, error = outcome if outcome else (JobStatus.PASSED if self._code == 0 else JobStatus.FAILED, None)
            # The finish: job hooks and artifacts (not after a cancel), cleanup
            # always; a timeout leaves them CLEANUP_GRACE seconds.
            if status is not JobStatus.CANCELLED:
                # The test reports, passed or failed (a failure is when they matter): apiary.drone.testreports
                parent = any(s.get("remote") for s in self.pipeline.get("stages") or [])
                stopped = await self._guarded(send_reports(self.workspace, self.pipeline, self.plugins.reports,
                                                           self.emit, self.masker.mask, parent))
                if stopped is not None:
                    status, error = stopped
            if status is not JobStatus.CANCELLED:
                hook = "on_success" if status is JobStatus.PASSED else "on_failure"
                stopped = await self._guarded(self._hooks([] if self._waiting else self._job_hooks(hook), env, hook,
                                                          self._last_phase))  # a job at a gate has not ended
                artifacts = self._artifacts + self.plugins.artifacts  # the pipeline's, then the plugins'
                if stopped is None and self.collect is not None and artifacts:
                    collected = await self._guarded(self.collect(self.workspace, artifacts))
                    if collected is not None:
                        # Artifacts a job promised and could not deliver: it failed, saying why (or was cancelled).
                        status, error = collected if collected[0] is JobStatus.CANCELLED else (JobStatus.FAILED,
                                                                                              collected[1])
                if stopped is None and status is JobStatus.PASSED and self.caches is not None:
                    stopped = await self._guarded(self.caches.save())  # a cache never fails the job
                if stopped is not None and stopped[0] is JobStatus.CANCELLED:
                    status, error = stopped
            if self._cleanup_on_cancel:
                stopped = await self._guarded(self._cleanup(env))
                if stopped is not None and stopped[0] is JobStatus.CANCELLED:
                    status, error = stopped
        finally:
            watchdog.cancel()
            self.disk.close()
        if self._waiting and status is JobStatus.PASSED:
            status = JobStatus.WAITING  # this attempt is over; the job goes on once approved (apiary.core.approvals)
        done: dict[str, Any] = {"timestamp": time.time(), "result": status.value,
                                "usage": self.steps.job_usage.to_dict()}
        if error:
            done["error"] = self.masker.mask(error)
        if self._setup_failed and status is JobStatus.ERRORED:
            done["retry"] = True  # not the job's fault: the queen runs it again, elsewhere if it can
            done["error"] = "setup failed: " + done.get("error", "no reason given")
        self.emit(Msg.JOB_DONE, done)
        return status.value

    async def _guarded(self, work: Awaitable[Any]) -> tuple[JobStatus, str] | None:
        """Run `work`; None if it ended by itself, else how the job must end (cancel, timeout, error)."""
        try:
            await work
            return None
        except PluginError as exc:  # a failed install is a setup error; a plugin raising fails the job
            self.steps.kill_all()
            self._setup_failed = exc.setup
            error = self.masker.mask(str(exc))
            self._say(f"apiary: {error}\n")
            return (JobStatus.ERRORED if exc.setup else JobStatus.FAILED), error
        except asyncio.CancelledError:
            self.steps.kill_all()
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled here; what follows may await again
            if self._abort is None:
                self._say(CANCELLED_LINE)
                if self._cancels > 0:  # a second cancel: stop at once, cleanup included
                    self._cleanup_on_cancel = False
                self._cancels += 1
                return JobStatus.CANCELLED, "cancelled"
            reason, self._abort = self._abort, None
            self._say(f"apiary: {reason}; stopped\n")
            return JobStatus.FAILED, reason
        except ArtifactError as exc:
            error = self.masker.mask(str(exc) if isinstance(exc, GivenFileError) else f"artifacts: {exc}")
            self._say(f"apiary: {error}\n")
            return JobStatus.FAILED, error
        except Exception as exc:  # a broken job must not take the drone down
            log.exception("job %s: executor error", self.job["id"])
            self.steps.kill_all()
            error = f"drone error: {exc}"
            self._say(f"apiary: {error}\n")
            return JobStatus.ERRORED, error

    def _job_hooks(self, name: str) -> list[dict[str, Any]]:
        return list((self.pipeline.get("hooks") or {}).get(name, []))

    # -- phases -----------------------------------------------------------------

    async def _phases(self, env: dict[str, str]) -> None:
        """Everything up to the deploy phase; the job's code lands in self._code."""
        pipeline, job_type = self.pipeline, self.job.get("type", JobType.TEST.value)
        self._code = 1  # until the phases say otherwise
        await self.plugins.setup(env)
        await self._hooks(self._job_hooks("on_start"), env, "on_start", "environment")
        code = await self._phase("environment", self._checkout_steps(env) + self._plain("environment"), env)
        if code == 0 and self.caches is not None:  # once checked out: hashFiles sees the job's files
            await self.caches.restore()
        if code == 0 and self.job.get("resume"):  # a partial run: the earlier stages' artifacts, once checked out
            await self._restore()
        if code == 0:
            code = await self._phase("prepare", self._plain("prepare"), env)
        stages = spread.child_stages(self.job, runnable_stages(pipeline, job_type) + self.plugins.stages)
        tests = [s for s in stages if not s.get("deploy")]
        deploys = [s for s in stages if s.get("deploy")]
        if code == 0 and job_type != JobType.DEPLOY.value:
            code = await self._stages("test", tests, env)
            await self.plugins.results()
        self.emit(Msg.JOB_TESTED, {"code": code, "timestamp": time.time()})
        if job_type in (JobType.DEPLOY.value, JobType.TEST_DEPLOY.value) and not self._waiting:  # at a gate: later
            if code == 0:
                code = await self._stages("deploy", deploys, env)
            else:
                self.emit(Msg.JOB_PHASE, {"phase": "deploy", "state": "skipped"})
            self.emit(Msg.JOB_DEPLOYED, {"code": code, "timestamp": time.time()})
        self._code = code

    def _plain(self, phase: str) -> list[dict[str, Any]]:
        """A phase's steps: the plugins' (in the order the job names them), then the pipeline's."""
        return self.plugins.steps.get(phase, []) + list((self.pipeline.get("phases") or {}).get(phase, []))

    def _checkout_steps(self, env: dict[str, str]) -> list[dict[str, Any]]:
        repo = self.job.get("repo") or {}
        if not repo.get("url"):
            return []
        assert self.private_dir is not None, "a job with a URL needs a private directory"
        user = self.sandbox.job_user if self.sandbox is not None else None
        plan = checkout_plan(repo["url"], self.job.get("ref") or {}, repo.get("auth"), self.private_dir,
                             owner=(user.pw_uid, user.pw_gid) if user is not None else None)
        self._checkout_cleanup = plan.cleanup
        # The credentials' environment is the checkout's alone, never the job's steps'.
        # Fetched on the drone's own network (a Git server may be on its loopback); the job's steps are not.
        steps = [{"run": c, "title": c.split("#")[0][:80], "stage": "checkout", "env": plan.env, "network": "host"}
                 for c in plan.commands]
        if not FULL_SHA.fullmatch((self.job.get("ref") or {}).get("id") or ""):
            steps[-1]["_after"] = self._report_commit  # the queen did not know the commit: say which it was
            steps[-1]["_keep_output"] = True  # what it prints (SHOW_COMMIT) gives the commit's subject and author
        return steps

    def _emit_step(self, msg: Msg, body: dict[str, Any]) -> None:
        """The step runner's events, on to the queen; the stdout of a step that keeps it (`_kept`) kept too."""
        if self._kept is not None and msg is Msg.JOB_CMD_STDOUT:
            self._kept.append(str(body.get("text") or ""))
        self.emit(msg, body)

    def _report_commit(self, env: dict[str, str]) -> None:
        """Tell the queen the commit the checkout ended on (it records it as the job's ref.id), before
        any step of the pipeline runs; the steps that follow see it as APIARY_COMMIT."""
        sha = checked_out(self.workspace)
        if sha is None:
            log.warning("job %s: checked out, but no commit found in %s/.git/HEAD", self.job["id"], self.workspace)
            return
        env["APIARY_COMMIT"] = sha
        shown = shown_commit("".join(self._kept or ()), sha)
        self._kept = None
        self.emit(Msg.JOB_CHECKOUT, {"commit": sha, **(shown or {})})

    async def _phase(self, phase: str, steps: list[dict[str, Any]], env: dict[str, str]) -> int:
        """Run a phase's plain steps; return 0, or the exit code of the step that failed."""
        if not steps:
            return 0
        self.emit(Msg.JOB_PHASE, {"phase": phase, "state": "started"})
        try:
            code = await self._steps(steps, env, phase, None)
        finally:
            if phase == "environment" and self._checkout_cleanup is not None:
                self._checkout_cleanup()  # the key file goes as soon as the checkout is done
        self.emit(Msg.JOB_PHASE, {"phase": phase, "state": "passed" if code == 0 else "failed"})
        return code

    async def _steps(self, steps: list[dict[str, Any]], env: dict[str, str], phase: str, stage: str | None) -> int:
        """Run steps until one fails; return 0 or that step's exit code."""
        self._last_phase = phase
        for step in steps:
            step_env = {**env, **step["env"]} if step.get("env") else env
            self._kept = [] if step.get("_keep_output") else None
            code = await self._step(step, step_env, phase, stage or step.get("stage"))
            if code != 0 and not step.get("ignore_exit_code"):
                return code
            if callable(step.get("_after")):  # the executor's own (never a pipeline's: data holds no callables)
                step["_after"](env)
        return 0

    async def _step(self, step: Mapping[str, Any], env: dict[str, str], phase: str, stage: str | None,
                    hook: str | None = None) -> int:
        """Run one step: again, as a command of its own each time, while its `retry` says so (apiary.core.retry);
        return the last attempt's exit code (TIMED_OUT when its own `timeout` stopped it)."""
        rule, limit = step.get("retry"), step.get("timeout")
        of = retry.attempts(rule)
        attempt = 1
        while True:
            code = await self.steps.run(step["run"], env, title=step.get("title", ""), phase=phase, stage=stage,
                                        hook=hook, network=step.get("network"),
                                        merge_output=step.get("merge_output") is True, timeout=limit,
                                        retry={"attempt": attempt, "of": of} if of > 1 else None)
            timed_out = isinstance(code, retry.TimedOut)  # not a command that exits 124 by itself
            if not retry.again(rule, attempt, code, timed_out):
                return code
            self._say(f"apiary: {step.get('title') or 'the step'} {retry.why(code, timed_out, limit)} "
                      f"(attempt {attempt} of {of}); running it again\n")
            attempt += 1

    async def _hooks(self, steps: list[dict[str, Any]], env: dict[str, str], hook: str, phase: str,
                     stage: str | None = None) -> None:
        for step in steps:
            await self._step(step, env, phase, stage, hook)

    async def _stages(self, phase: str, stages: Sequence[Mapping[str, Any]], env: dict[str, str]) -> int:
        """Run `stages` as their `needs` allow, up to `parallel` at once.

        Returns 0 when all passed, else the exit code of the first stage that failed.
        """
        if not stages:
            return 0
        self.emit(Msg.JOB_PHASE, {"phase": phase, "state": "started"})
        limit = int(self.pipeline.get("parallel") or 1)
        reuse = partial.plan(stages, self.job.get("resume"))  # a partial run's stages passed elsewhere
        for line in reuse.lines:
            self._say(line + "\n")
        done: dict[str, bool] = dict.fromkeys(reuse.reused, True)
        hold = approvals.held(stages, set((self.job.get("resume") or {}).get("approved") or []))
        hold |= spread.held(stages, self.job.get("resume"), list(self._when_stages))  # left to child jobs
        first_failure = 0
        running: dict[asyncio.Task[int], str] = {}
        for stage in stages:  # skipped by a `when:`: as if passed, so the stages that need it still run
            if stage["name"] in self._when_stages:
                done[stage["name"]] = True
                self._say(f"apiary: stage {stage['name']} skipped: {self._when_stages[stage['name']]}\n")
        try:
            while True:
                if all(done.values()):  # after a failure, nothing new starts
                    by_name = {s["name"]: s for s in stages}
                    for name in next_stages([s for s in stages if s["name"] not in hold], done, set(running.values()),
                                            limit):
                        task = asyncio.create_task(self._stage(phase, by_name[name], env))
                        running[task] = name
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    code = task.result()
                    done[running.pop(task)] = code == 0
                    first_failure = first_failure or code
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        if hold and all(done.values()):  # all it may run passed: the rest waits for an approval
            for line in approvals.waiting_lines(stages, hold) + spread.waiting_lines(stages, hold, self.job.get("resume")):
                self._say(line + "\n")
            self._waiting = True
            self.emit(Msg.JOB_PHASE, {"phase": phase, "state": "waiting"})
            return 0
        skipped = [s["name"] for s in stages if s["name"] not in done]
        for name in skipped:
            self._say(f"apiary: stage {name} skipped: " + ("a stage it needs failed\n" if name in
                      blocked_stages(stages, done) else "an earlier stage failed\n"))
        code = first_failure or (1 if skipped else 0)
        self.emit(Msg.JOB_PHASE, {"phase": phase, "state": "passed" if code == 0 else "failed"})
        return code

    async def _stage(self, phase: str, stage: Mapping[str, Any], env: dict[str, str]) -> int:
        stage_env = {**env, **{str(k): str(v) for k, v in (stage.get("env") or {}).items()}}
        hooks = stage.get("hooks") or {}
        name = stage["name"]
        await self._hooks(hooks.get("on_start", []), stage_env, "on_start", phase, name)
        steps = []
        for i, step in enumerate(stage["steps"]):
            if (name, i) in self._when_steps:
                self._say(f"apiary: step {i + 1} of stage {name} skipped: {self._when_steps[(name, i)]}\n")
            else:
                steps.append(step)
        code = await self._steps(steps, stage_env, phase, name)
        hook = "on_success" if code == 0 else "on_failure"
        await self._hooks(hooks.get(hook, []), stage_env, hook, phase, name)
        return code

    async def _restore(self) -> None:
        """Write the artifacts a partial run restores (apiary.core.partial) into the workspace, saying so."""
        user = self.sandbox.job_user if self.sandbox is not None else None
        files = (self.job.get("resume") or {}).get("files") or []
        refused: list[str] = []
        for line in await asyncio.to_thread(restore, self.workspace, files,
                                            (user.pw_uid, user.pw_gid) if user is not None else None, refused):
            self.emit(Msg.JOB_STDOUT, {"text": line})
        if refused:  # a shard's list the checkout stood in the way of: never run the checkout's instead
            raise GivenFileError(refused[0])

    async def _cleanup(self, env: dict[str, str]) -> None:
        steps = self._plain("cleanup")
        if not steps:
            return
        self.emit(Msg.JOB_PHASE, {"phase": "cleanup", "state": "started"})
        for step in steps:
            try:
                await self._step(step, env, "cleanup", step.get("stage"))
            except Exception:
                log.exception("job %s: cleanup step failed to run", self.job["id"])
        self.emit(Msg.JOB_PHASE, {"phase": "cleanup", "state": "passed"})

    # -- limits -------------------------------------------------------------------

    async def _watchdog(self, job_task: asyncio.Task[Any] | None) -> None:
        quiet = self.pipeline.get("output_timeout")
        timeout = self.pipeline.get("timeout")
        if job_task is None or (not self._deadline and not quiet and not self.disk.limit):
            return
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if self._abort is not None:
                continue  # the job is being stopped already
            if self._deadline and now > self._deadline:
                self._abort = f"the job timed out after {_human(timeout)}"
                self._deadline = now + CLEANUP_GRACE  # what is left: the finish, bounded
                timeout = CLEANUP_GRACE
            elif quiet and now - self.steps.last_output > quiet:
                self._abort = f"no output for {_human(quiet)}"
                self.steps.last_output = now  # the finish gets a fresh allowance
            else:
                self._abort = self.disk.over()  # said once: the finish may clean the workspace up
            if self._abort:
                job_task.cancel()

    def _say(self, text: str) -> None:
        self.emit(Msg.JOB_STDERR, {"text": text})


def _human(seconds: float) -> str:
    seconds = float(seconds)
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


