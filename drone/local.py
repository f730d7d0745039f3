"""`apiary run`: a working copy's pipeline, run right here with the drone's executor.

No queen, no store, no checkout: the steps run in the working copy itself (like
``make``), each command's output streams to the terminal as it comes, and a
summary closes the run. The exit status is 0 when the job passed, 1 when it
failed, 2 when the pipeline or the parameters are wrong.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from apiary.core import shards, spread
from apiary.core.conditions import Changes, JobFacts, decide
from apiary.core.config import DroneConfig
from apiary.core.errors import ApiaryError
from apiary.core.pipeline import load_pipeline
from apiary.core.protocol import JobStatus, Msg
from apiary.core.reports import counts_line
from apiary.core.stages import resolve_parameters

from . import artifacts
from .executor import JobRun
from .localdebug import DebugRun
from .plugins import PluginManager


class LocalRunError(ApiaryError):
    """The working copy cannot be run: no pipeline file, or a bad --param."""

    exit_code = 2


class Terminal:
    """Shows a job's events as a person reads them; collects the summary."""

    def __init__(self, out: TextIO, err: TextIO, colour: bool) -> None:
        self.out, self.err, self.colour = out, err, colour
        self.commands: dict[int, dict[str, Any]] = {}
        self.result: dict[str, Any] = {}

    def _paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour else text

    def emit(self, msg: Msg, body: dict[str, Any]) -> None:
        if msg is Msg.JOB_CMD_START:
            self.commands[body["num"]] = dict(body)
            where = "/".join(x for x in (body.get("phase"), body.get("stage"), body.get("hook")) if x)
            self.out.write(self._paint(f"\n▶ [{where}] {body['title']}{_attempt(body)}", "1;36") + "\n")
            if body["title"] != body["screencmd"]:
                self.out.write(self._paint(f"$ {body['screencmd']}", "2") + "\n")
        elif msg in (Msg.JOB_CMD_STDOUT, Msg.JOB_STDOUT):
            self.out.write(body["text"])
        elif msg in (Msg.JOB_CMD_STDERR, Msg.JOB_STDERR):
            self.out.flush()
            self.err.write(body["text"])
            self.err.flush()
        elif msg is Msg.JOB_CMD_DONE:
            self.commands[body["num"]].update(body)
            ok = body["exitCode"] == 0
            ended = ("timed out, " if body.get("timedOut") else "") + f"exit {body['exitCode']}"
            mark = self._paint("✓", "32") if ok else self._paint(f"✗ {ended}", "31")
            self.out.write(f"{mark} {body['duration']:.2f}s\n")
        elif msg is Msg.JOB_PLUGIN:
            figures = ", ".join(f"{k} {v}" for k, v in body["data"].items())
            self.out.write(self._paint(f"plugin {body['plugin']}: {figures}", "2") + "\n")
        elif msg is Msg.JOB_REPORT and isinstance(body.get("counts"), dict):  # apiary.core.reports
            bad = any(body["counts"].get(k) for k in ("failed", "errors"))
            self.out.write(self._paint(counts_line(body["counts"]), "1;31" if bad else "1;32") + "\n")
        elif msg is Msg.JOB_DONE:
            self.result = dict(body)
        self.out.flush()

    def summary(self, elapsed: float, in_shell: float = 0.0) -> None:
        """`elapsed`: seconds the job took, a debug shell's `in_shell` seconds not included (said apart)."""
        self.out.write("\n" + self._paint("Summary", "1") + "\n")
        for num, c in sorted(self.commands.items()):
            code = c.get("exitCode")
            state = "ok" if code == 0 else f"exit {code}"
            where = "/".join(x for x in (c.get("phase"), c.get("stage"), c.get("hook")) if x)
            self.out.write(f"  {num:>3}  {state:<8} {c.get('duration', 0):7.2f}s  [{where}] {c['title']}{_attempt(c)}\n")
        result = self.result.get("result", "errored")
        paint = "1;32" if result == JobStatus.PASSED.value else "1;31"
        why = f" ({self.result['error']})" if self.result.get("error") else ""
        shell = f" (and {in_shell:.2f}s in the debug shell)" if in_shell else ""
        self.out.write(self._paint(f"Job {result}{why} in {elapsed:.2f}s", paint) + shell + "\n")
        self.out.flush()


def _attempt(body: dict[str, Any]) -> str:
    """" (attempt 1 of 3)" for an attempt of a step with a retry (apiary.core.retry), else ""."""
    retry = body.get("retry")
    return f" (attempt {retry.get('attempt')} of {retry.get('of')})" if isinstance(retry, dict) else ""


def _branch_of(workdir: Path) -> str:
    """The branch checked out in `workdir` (its .git/HEAD, read, no git run), or "" (none, detached)."""
    try:
        head = (workdir / ".git" / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return ""
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else ""


async def run_local(path: Path, job_type: str, params: dict[str, str], pipeline_file: str = ".apiary.yml",
                    out: TextIO = sys.stdout, err: TextIO = sys.stderr, drone: DroneConfig | None = None,
                    debug: bool = False) -> int:
    """Run the pipeline of the working copy at `path`; return the exit status.

    Plugins the pipeline names are installed as a drone would, under the
    drone's ``work_dir`` (`drone` config), and reused by later runs. `debug`: a shell after the first failing
    step (drone/localdebug.py).
    """
    workdir = path.resolve()
    file = workdir / pipeline_file
    try:
        text = file.read_text()
    except OSError as exc:
        raise LocalRunError(f"{file}: {exc.strerror or exc}") from None
    pipeline = load_pipeline(text, str(file))  # PipelineError names file, line and field
    pipeline = spread.here(pipeline)  # no pool here: spread cells run in this workspace, as plain cells do
    job = {"id": f"local-{int(time.time())}", "number": 0, "type": job_type, "pipeline": pipeline,
           "parameters": resolve_parameters(pipeline, params), "repo": {"name": workdir.name, "url": ""},
           "ref": {}, "secrets": {}, "plugins": pipeline.get("plugins") or []}
    # `when:` as the queen would decide it for a manual job of the working copy's branch; what changed is
    # not compared here (no earlier job to compare with), so `changed` always holds.
    facts = JobFacts(_branch_of(workdir), "manual", job_type, job["parameters"],
                     Changes(None, why="apiary run compares with no earlier job"))
    job["conditions"] = [d.doc() for d in decide(pipeline, facts)]
    terminal = Terminal(out, err, colour=out.isatty())

    async def collect(root: Path, globs: list[str]) -> None:
        files, notes = artifacts.match(root, globs)
        for note in notes:
            terminal.emit(Msg.JOB_STDOUT, {"text": note + "\n"})
        for f in files:
            terminal.emit(Msg.JOB_STDOUT, {"text": f"artifact: {f.name} ({f.size:,} bytes)\n"})

    env = {k: v for k, v in os.environ.items() if not k.startswith("APIARY_")}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="apiary-run-") as private:
        job["pipeline"] = shards.here(pipeline, sys.executable, private)  # shards split here, with no history
        run = (DebugRun if debug else JobRun)(job, workdir, terminal.emit, env, flush_after=0.02, chunk_bytes=65536,
                     private_dir=Path(private), collect=collect, plugins=PluginManager(drone or DroneConfig()))
        # A Ctrl-C cancels run(), which kills the running commands and returns "cancelled".
        result = await run.run()
    in_shell = getattr(run, "in_shell", 0.0)
    terminal.summary(time.monotonic() - started - in_shell, in_shell)
    if result == JobStatus.CANCELLED.value:
        return 130  # as a shell reports an interrupted command
    return 0 if result == JobStatus.PASSED.value else 1
