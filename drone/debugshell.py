"""Debug shells on the drone: failed jobs' kept workspaces, and a shell on a PTY in one (apiary.core.debug).

When a job fails and its pipeline says ``debug: {keep: true}``, the agent
hands its workspace and /tmp to `DebugShells.keep` instead of deleting them,
with the job's environment and its secrets. They stay until ``total``
seconds after the job ended, or until the last shell there has ended,
whichever is later; sooner when the drone's disk runs short (less than
LOW_DISK_BYTES or LOW_DISK_SHARE free: kept workspaces without a shell go,
oldest first); and a drone that starts deletes those its previous run kept
(a note per kept job under ``work_dir/debug``).

``debug:open`` starts ``bash --norc --noprofile -i`` (``sh -i`` without bash)
on a new PTY as the job's commands ran: in their sandbox when the drone has
one (with no network: the job's own has ended), as the job's user, in its
workspace, with its environment, the PTY being its controlling terminal.
What it prints goes to the queen as ``debug:output`` with the job's secrets
masked as the log masks them (drone/masking.py), in chunks of at most
MAX_CHUNK bytes and never more than WINDOW bytes unacknowledged (the PTY is
not read meanwhile, so a shell printing without end waits). A tail that may be
the start of a secret is held at most HOLD seconds. The shell ends on
``debug:close``, when it exits, after ``idle`` seconds with nothing typed or
printed, after ``total`` seconds, or when the drone stops; ``debug:closed``
says how.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apiary.core import debug
from apiary.core.protocol import Msg

from .masking import Masker, MaskingStream
from .sandbox import JobPaths, Sandbox

log = logging.getLogger(__name__)

HOLD = 0.05  # seconds a possible secret's start is held before it is shown (or masked whole)
LOW_DISK_BYTES = 1 * 2**30
LOW_DISK_SHARE = 0.05
CHECK_EVERY = 5.0  # seconds between checks of kept workspaces' windows and of the disk
KILL_GRACE = 2.0
MAX_INPUT_WAITING = 4 * 2**20  # bytes of input a shell may have waiting for its PTY (a big paste into a slow reader)

Send = Callable[[Msg, dict[str, Any]], bool]


@dataclasses.dataclass
class Kept:
    """A failed job's workspace, kept for debug shells."""

    job: str
    paths: JobPaths
    env: dict[str, str]
    masker: Masker  # the job's secrets, as its log masked them
    idle: float
    total: float
    until: float  # monotonic: when it goes, with no shell open
    kept_at: float = dataclasses.field(default_factory=time.monotonic)
    shells: int = 0
    label: str = ""  # what the prompt names: repo#N (the job's id without them)


class Shell:
    """One shell on a PTY, its output masked and flow-controlled."""

    def __init__(self, session: str, kept: Kept, proc: subprocess.Popen[bytes], master: int, masker: Masker,
                 send: Send, on_end: Callable[[Shell, str, str], None]) -> None:
        self.session, self.kept, self.proc, self.master = session, kept, proc, master
        self.send, self.on_end = send, on_end
        self.stream: MaskingStream = masker.stream()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.opened = self.active = time.monotonic()
        self.in_flight = 0  # bytes of output sent and not acked
        self.reading = False
        self.waiting = bytearray()  # input the PTY has not taken yet
        self.writing = False
        self.ended = False
        self._hold: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()
        self._read_on()
        self._arm()

    # -- output ---------------------------------------------------------------------

    def _read_on(self) -> None:
        if not self.reading and not self.ended and self.in_flight < debug.WINDOW:
            self.loop.add_reader(self.master, self._readable)
            self.reading = True

    def _read_off(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.master)
            self.reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, debug.MAX_CHUNK // 2)  # masks may lengthen it; the chunk stays under
        except OSError:  # EIO: the shell and everything holding the PTY ended
            data = b""
        if not data:
            self._read_off()
            self._out(self.stream.feed(self.decoder.decode(b"", final=True)) + self.stream.flush())
            self.end("exited", self._exit_detail())
            return
        self.active = time.monotonic()
        self._out(self.stream.feed(self.decoder.decode(data)))
        if self.stream.pending and self._hold is None:
            self._hold = self.loop.call_later(HOLD, self._release)
        if self.in_flight >= debug.WINDOW:
            self._read_off()  # the queen has not passed on what went: wait for its ack

    def _release(self) -> None:
        self._hold = None
        if not self.ended:
            self._out(self.stream.release(paced=True))

    def _out(self, text: str) -> None:
        data = text.encode()
        for start in range(0, len(data), debug.MAX_CHUNK):
            part = data[start:start + debug.MAX_CHUNK]
            self.in_flight += len(part)
            self.send(Msg.DEBUG_OUTPUT, {"session": self.session, "data": part})

    def acked(self, count: int) -> None:
        self.in_flight = max(0, self.in_flight - max(0, count))
        self._read_on()

    # -- input ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Input for the shell: written as the PTY takes it, the rest kept in order (at most MAX_INPUT_WAITING
        bytes; past that the shell ends, saying so, rather than lose keystrokes)."""
        self.active = time.monotonic()
        if self.ended:
            return
        self.waiting += data[:debug.MAX_CHUNK]
        if len(self.waiting) > MAX_INPUT_WAITING:
            self.end("error", f"input came faster than the shell read it: over {MAX_INPUT_WAITING // 1024} KiB "
                              "waiting; the shell ended rather than drop what was typed")
            return
        self._writable()

    def _writable(self) -> None:
        while self.waiting and not self.ended:
            try:
                written = os.write(self.master, self.waiting[:debug.MAX_CHUNK])
            except BlockingIOError:
                break
            except OSError:  # the shell ended: its end comes from the reader
                self.waiting.clear()
                break
            del self.waiting[:written]
        want = bool(self.waiting) and not self.ended
        if want and not self.writing:
            self.loop.add_writer(self.master, self._writable)
        elif not want and self.writing:
            self.loop.remove_writer(self.master)
        self.writing = want

    def resize(self, rows: int, cols: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # -- ending ---------------------------------------------------------------------

    def _arm(self) -> None:
        now = time.monotonic()
        how = debug.expired(self.opened, self.active, now, self.kept.idle, self.kept.total)
        if how is not None:
            self.end(how, f"no input or output for {self.kept.idle:g} s" if how == "idle" else
                     f"open for {self.kept.total:g} s, the longest a shell may be")
            return
        self._timer = self.loop.call_later(debug.next_check(self.opened, self.active, now, self.kept.idle,
                                                            self.kept.total), self._arm)

    def _exit_detail(self) -> str:
        code = self.proc.poll()
        return f"the shell exited ({code})" if code is not None else "the shell exited"

    def end(self, how: str, detail: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        self._read_off()
        if self.writing:
            self.loop.remove_writer(self.master)
            self.writing = False
        for timer in (self._hold, self._timer):
            if timer is not None:
                timer.cancel()
        _stop(self.proc)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.send(Msg.DEBUG_CLOSED, {"session": self.session, "how": how, **({"detail": detail} if detail else {})})
        self.on_end(self, how, detail)


class DebugShells:
    """A drone's kept workspaces and the shells open in them."""

    def __init__(self, sandbox: Sandbox, work: Path, send: Send,
                 remove: Callable[[Path], Any] | None = None, queen_lost: Callable[[], bool] = lambda: False,
                 lost_after: float = 30.0) -> None:
        """`queen_lost`: whether the link to the queen is down now; `lost_after`: seconds of silence after which
        the queen counts this drone gone (and its shells ended)."""
        self.queen_lost, self.lost_after = queen_lost, lost_after
        self.sandbox = sandbox
        self.notes = work / "debug"
        self.work = work
        self.send = send
        self.kept: dict[str, Kept] = {}
        self.shells: dict[str, Shell] = {}
        # Every shell started whose processes may live on (ended ones included until their group is gone): the
        # drone's stop kills them all, timers of `_stop`'s pending or not.
        self.started: list[subprocess.Popen[bytes]] = []
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Delete what a previous run of this drone kept (nobody can reach it now); check windows from now on."""
        for note in sorted(self.notes.glob("*.json")) if self.notes.is_dir() else ():
            try:
                paths = json.loads(note.read_text())
                for path in (paths.get("workspace"), paths.get("tmp")):
                    if isinstance(path, str) and Path(path).is_relative_to(self.work):
                        shutil.rmtree(path, ignore_errors=True)
            except (OSError, ValueError, AttributeError):
                log.warning("could not read %s: left as it is", note)
            note.unlink(missing_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        """End every shell and kill what it started (the drone stops: no timer of `_stop`'s would fire)."""
        procs = self.started
        for shell in list(self.shells.values()):
            shell.end("drone gone", "the drone is stopping")
        deadline = time.monotonic() + KILL_GRACE
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in procs:
            _kill(proc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in list(self.kept):
            await self._drop(job)

    # -- keeping --------------------------------------------------------------------

    def wants(self, job: Mapping[str, Any], status: str) -> bool:
        """Whether a job that ended `status` keeps its workspace for debug shells."""
        return status == "failed" and ((job.get("pipeline") or {}).get("debug") or {}).get("keep") is True

    def keep(self, job: Mapping[str, Any], paths: JobPaths, env: Mapping[str, str], masker: Masker) -> None:
        settings = debug.settings_of(job)
        job_id = str(job["id"])
        old = self.kept.pop(job_id, None)
        if old is not None:
            self._remove(old)
        self.kept[job_id] = Kept(job_id, paths, dict(env), masker, settings["idle"], settings["total"],
                                 until=time.monotonic() + settings["total"], label=prompt_label(job))
        try:
            self.notes.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.notes / f"{job_id}.json").write_text(json.dumps({"workspace": str(paths.workspace),
                                                                   "tmp": str(paths.tmp)}))
        except OSError as exc:
            log.warning("job %s: could not note its kept workspace (%s); it goes when the window ends", job_id, exc)
        log.info("job %s failed: its workspace %s is kept %g s for debug shells", job_id, paths.workspace,
                 settings["total"])

    async def _watch(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_EVERY)
            now = time.monotonic()
            # The queen ends a session whose drone it lost, and hears no more of it: the shell must not run on
            # unseen (and past the job's cap). Lost: the link is down, or this drone was paused (stopped, its
            # machine asleep) longer than the queen waits for it.
            stalled, last = now - last > CHECK_EVERY + self.lost_after, now
            if self.shells and (stalled or self.queen_lost()):
                for shell in list(self.shells.values()):
                    shell.end("drone gone", "the drone lost its queen (or was paused): the queen ended the shell")
            for job, kept in list(self.kept.items()):
                if kept.shells == 0 and now >= kept.until:
                    log.info("job %s: its debug window ended; deleting its kept workspace", job)
                    await self._drop(job)
            if self.kept and _disk_short(self.work):
                for job, kept in sorted(self.kept.items(), key=lambda item: item[1].kept_at):
                    if kept.shells == 0:
                        log.warning("disk short: deleting job %s's kept workspace", job)
                        await self._drop(job)
                        if not _disk_short(self.work):
                            break

    async def _drop(self, job: str) -> None:
        kept = self.kept.pop(job, None)
        if kept is not None:
            await asyncio.to_thread(self._remove, kept)

    def _remove(self, kept: Kept) -> None:
        for path in (kept.paths.workspace, kept.paths.tmp):
            shutil.rmtree(path, ignore_errors=True)
        (self.notes / f"{kept.job}.json").unlink(missing_ok=True)

    # -- messages from the queen ----------------------------------------------------

    def on_message(self, msg: Msg, body: dict[str, Any]) -> None:
        session = str(body.get("session", ""))
        if msg is Msg.DEBUG_OPEN:
            self.open(body)
            return
        shell = self.shells.get(session)
        if shell is None:
            return  # ended already: what crossed its end is moot
        if msg is Msg.DEBUG_INPUT:
            shell.write(body["data"])
        elif msg is Msg.DEBUG_RESIZE:
            rows, cols = body["rows"], body["cols"]
            if 1 <= rows <= debug.MAX_ROWS and 1 <= cols <= debug.MAX_COLS:
                shell.resize(rows, cols)
        elif msg is Msg.DEBUG_ACK:
            shell.acked(body["bytes"])
        elif msg is Msg.DEBUG_CLOSE:
            shell.end("closed", "closed by the person or the queen")

    def open(self, body: dict[str, Any]) -> None:
        session, job = str(body["session"]), str(body["job"])

        def refuse(why: str) -> None:
            self.send(Msg.DEBUG_CLOSED, {"session": session, "how": "refused", "detail": why})

        if not debug.SESSION_ID.match(session) or session in self.shells:
            return refuse("a debug session needs a new id")
        kept = self.kept.get(job)
        if kept is None:
            return refuse(f"job {job}'s workspace is not kept on this drone (never kept, its window ended, "
                          "or the drone restarted)")
        try:
            rows, cols = debug.size(body["rows"], body["cols"])
        except debug.InputError as exc:
            return refuse(str(exc))
        kept.idle = min(kept.idle, float(body["idle"])) if body["idle"] > 0 else kept.idle
        kept.total = min(kept.total, float(body["total"])) if body["total"] > 0 else kept.total
        try:
            proc, master = self._spawn(kept, rows, cols)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("job %s: could not start a debug shell: %s", job, exc)
            return refuse(f"the drone could not start a shell: {exc}")
        kept.shells += 1
        self.started = [p for p in self.started if _group_lives(p)] + [proc]
        self.shells[session] = Shell(session, kept, proc, master, kept.masker, self.send, self._ended)
        log.info("job %s: debug shell %s opened", job, session)
        self.send(Msg.DEBUG_OPENED, {"session": session, "sandboxed": self.sandbox.isolated})

    def _ended(self, shell: Shell, how: str, detail: str) -> None:
        self.shells.pop(shell.session, None)
        kept = shell.kept
        kept.shells = max(0, kept.shells - 1)
        # The window holds at least until this shell ended.
        kept.until = max(kept.until, time.monotonic())
        log.info("job %s: debug shell %s ended: %s %s", kept.job, shell.session, how, detail)

    def _spawn(self, kept: Kept, rows: int, cols: int) -> tuple[subprocess.Popen[bytes], int]:
        """The shell on a new PTY, as the job's commands ran (sandbox.py); (process, the PTY's master fd)."""
        shell = ["/bin/bash", "--noprofile", "--norc", "-i"] if os.access("/bin/bash", os.X_OK) else ["/bin/sh", "-i"]
        # The prompt names the job: its workspace's name (k-HEX, what \W showed) says nothing to a person.
        env = {**kept.env, "TERM": "xterm-256color", "PS1": f"debug:{kept.label or kept.job} \\$ ",
               "APIARY_DEBUG": "1"}
        paths = kept.paths
        if not paths.workspace.is_dir():
            raise OSError("the kept workspace is gone")
        argv = self.sandbox.command(shell, paths, network="none") if self.sandbox.isolated else shell
        master, slave = os.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.set_blocking(master, False)
            drop = self.sandbox.preexec if self.sandbox.needs_preexec else None

            def child() -> None:  # in the forked child: the PTY becomes its controlling terminal
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                if drop is not None:
                    drop()

            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=paths.workspace, env=env,
                                    start_new_session=True, preexec_fn=child,  # noqa: PLW1509 - a TIOCSCTTY needs code in the child
                                    close_fds=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return proc, master


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Hang up the shell's session (as a closed terminal does), then kill what stays."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGHUP)
    loop = asyncio.get_running_loop()

    def kill() -> None:
        _kill(proc, wait=False)
        loop.call_later(0.5, proc.poll)

    loop.call_later(KILL_GRACE, kill)


def _kill(proc: subprocess.Popen[bytes], wait: bool = True) -> None:
    """Kill the shell's process group, even when its leader ended: bubblewrap's inner process, init of the
    sandbox's pid namespace, ignores SIGHUP and SIGTERM from outside and may outlive the outer one that
    Popen started; SIGKILL ends it and, with it, everything in the sandbox. Then reap the leader."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        proc.kill()
    if wait:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)


def prompt_label(job: Mapping[str, Any]) -> str:
    """``repo#N`` for the shell's prompt, only of characters a prompt shows as they are (a repository's name is
    the pusher's: no escapes, no ``$(…)`` for bash to run); "" when the job has no repository or number."""
    repo = str((job.get("repo") or {}).get("name") or "")
    number = job.get("number")
    if not repo or isinstance(number, bool) or not isinstance(number, int) or number <= 0:
        return ""
    safe = "".join(c for c in repo if c.isascii() and (c.isalnum() or c in "-_."))[:60]
    return f"{safe}#{number}" if safe else ""


def _group_lives(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the shell or anything in its process group still runs."""
    if proc.poll() is None:
        return True
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _disk_short(path: Path) -> bool:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return False
    return usage.free < LOW_DISK_BYTES or usage.free < usage.total * LOW_DISK_SHARE
