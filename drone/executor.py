"""Runs one job's pipeline: stages in order, each step a child process.

Every step runs as ``/bin/sh -c COMMAND`` in the job's workspace, in a process
group of its own (so the whole tree can be killed at once), with the job's
parameters and ``APIARY_*`` variables in its environment. Output is read in
large chunks from both pipes and coalesced (drone/output.py). A failing step
fails its stage and stops the job. The executor reports through
``emit(type, fields)`` only; it knows nothing of sockets or seqs.

Cancellation: cancelling `run()` kills the running step's process group with
SIGKILL and the job ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from queen.protocol import JobStatus, Msg

from .output import OutputBuffer

log = logging.getLogger(__name__)

EmitFn = Callable[[Msg, dict[str, Any]], None]
READ_SIZE = 65536


class JobRun:
    """One job on this drone. `run()` returns the job's final status."""

    def __init__(self, job: dict[str, Any], workspace: Path, emit: EmitFn, base_env: Mapping[str, str],
                 flush_after: float, chunk_bytes: int) -> None:
        self.job = job
        self.workspace = workspace
        self.emit = emit
        self.base_env = base_env
        self.flush_after = flush_after
        self.chunk_bytes = chunk_bytes

    def environment(self) -> dict[str, str]:
        job = self.job
        env = dict(self.base_env)
        env.update({
            "CI": "true",
            "APIARY": "true",
            "APIARY_JOB_ID": job["id"],
            "APIARY_JOB_NUMBER": str(job.get("number", "")),
            "APIARY_JOB_TYPE": job.get("type", "TEST"),
            "APIARY_REPO": job.get("repo", {}).get("name", ""),
            "APIARY_BRANCH": job.get("ref", {}).get("branch", "") or "",
            "APIARY_COMMIT": job.get("ref", {}).get("id", "") or "",
            "APIARY_WORKSPACE": str(self.workspace),
        })
        env.update({k: str(v) for k, v in job.get("parameters", {}).items()})
        return env

    async def run(self) -> str:
        self.emit(Msg.JOB_STARTED, {"timestamp": time.time()})
        status = JobStatus.PASSED
        code = 0
        error = None
        try:
            env = self.environment()
            num = 0
            for stage in self.job["pipeline"]["stages"]:
                for step in stage["steps"]:
                    num += 1
                    code = await self._step(num, stage["name"], step, env)
                    if code != 0:
                        status = JobStatus.FAILED
                        break
                if status is not JobStatus.PASSED:
                    break
        except asyncio.CancelledError:
            status, code, error = JobStatus.CANCELLED, -1, "cancelled"
            self.emit(Msg.JOB_STDERR, {"text": "job cancelled\n"})
        except Exception as exc:  # a broken job must not take the drone down
            log.exception("job %s: executor error", self.job["id"])
            status, code, error = JobStatus.ERRORED, -1, f"drone error: {exc}"
            self.emit(Msg.JOB_STDERR, {"text": f"apiary: {error}\n"})
        now = time.time()
        self.emit(Msg.JOB_TESTED, {"code": code, "timestamp": now})
        done: dict[str, Any] = {"timestamp": now, "result": status.value, "code": code}
        if error:
            done["error"] = error
        self.emit(Msg.JOB_DONE, done)
        return status.value

    async def _step(self, num: int, stage: str, step: dict[str, Any], env: dict[str, str]) -> int:
        command = step["run"]
        self.emit(Msg.JOB_CMD_START, {"num": num, "command": command, "screencmd": command, "stage": stage,
                                      "title": step.get("title", command), "timestamp": time.time()})
        started = time.monotonic()

        def emit_output(stream: str, text: str) -> None:
            kind = Msg.JOB_CMD_STDOUT if stream == "stdout" else Msg.JOB_CMD_STDERR
            self.emit(kind, {"num": num, "text": text})

        buffer = OutputBuffer(emit_output, self.flush_after, self.chunk_bytes)
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, cwd=self.workspace, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            emit_output("stderr", f"apiary: cannot start the command: {exc}\n")
            code = 127
        else:
            try:
                await asyncio.gather(self._pump(proc.stdout, "stdout", buffer),
                                     self._pump(proc.stderr, "stderr", buffer))
                code = await proc.wait()
            except asyncio.CancelledError:
                self._kill_group(proc)
                await proc.wait()
                buffer.close()
                self._cmd_done(num, -signal.SIGKILL, started)
                raise
            finally:
                # Whatever the step left running in the background goes too.
                self._kill_group(proc)
        buffer.close()
        self._cmd_done(num, code, started)
        return code

    def _cmd_done(self, num: int, code: int, started: float) -> None:
        self.emit(Msg.JOB_CMD_DONE, {"num": num, "exitCode": code, "duration": round(time.monotonic() - started, 6)})

    @staticmethod
    async def _pump(stream: asyncio.StreamReader | None, name: str, buffer: OutputBuffer) -> None:
        assert stream is not None
        while chunk := await stream.read(READ_SIZE):
            buffer.feed(name, chunk)

    @staticmethod
    def _kill_group(proc: asyncio.subprocess.Process) -> None:
        # The step's own process group: its children and grandchildren too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
