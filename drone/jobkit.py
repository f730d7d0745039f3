"""What a job needs on this drone before its first command, made before the job comes.

A `JobKit` is a job's workspace and private /tmp, its isolated network (jobnet.py) and a sandbox made
ahead for its first command (warmbox.py). Made for a job that has come, the network alone took about
35 ms and a command's sandbox about 6 ms before anything of the job ran; `JobKits` keeps one kit ready,
so a job takes it at once and the next is made in the background, off the job's path.

A kit made ahead cannot be named after its job: its workspace is ``workspaces/k-HEX`` (the job sees that
path, the same for all its commands: the sandbox made ahead binds it already). A kept workspace
(``keep_workspaces``) is also found by its job's id, a link beside it (workspace.py). Without bubblewrap
nothing is made ahead: the kit is made when its job comes, named after it, as before.

Lifecycle: `start` (in the running loop) makes the first; `take(job_id)` gives one to a job; `release`
ends its network and an unused sandbox (its folders are the agent's to remove: workspace.py); `close`
ends the one kept ready and waits until their processes are reaped. Errors: `take` raises JobNetError
when the job's network cannot be made, OSError when its folders cannot be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import time

from .jobnet import JobNet, JobNetError, make
from .sandbox import JobPaths, Sandbox
from .warmbox import CAT, ENV, WarmBox
from .workspace import Workspaces

log = logging.getLogger(__name__)

SPARE = 1  # kits kept ready
KEEP_AFTER = 0.005  # seconds after a kit is taken before the next is made


@dataclasses.dataclass
class JobKit:
    """One job's folders, network and first sandbox."""

    paths: JobPaths  # workspace and tmp (no private dir: the agent makes one for a checkout)
    net: JobNet | None = None  # None: the job's network is not isolated through slirp4netns
    box: WarmBox | None = None  # None: nothing made ahead (no bubblewrap, or made when the job came)

    @property
    def alive(self) -> bool:
        return self.net is None or self.net.alive


class JobKits:
    """The drone's job kits: one kept ready when jobs run in bubblewrap, made again when taken."""

    def __init__(self, sandbox: Sandbox, workspaces: Workspaces) -> None:
        self.sandbox = sandbox
        self.workspaces = workspaces
        self.isolated = sandbox.bwrap is not None and sandbox.network == "isolated" and sandbox.slirp is not None
        # Made ahead only in bubblewrap (without it a command starts in about a millisecond anyway).
        self.ahead = sandbox.bwrap is not None and os.access(CAT, os.X_OK) and os.access(ENV, os.X_OK)
        self._spare: list[JobKit] = []
        self._making: asyncio.Task[None] | None = None
        self._reaping: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Begin making the first kit (call in the running loop)."""
        self._refill()

    async def take(self, job_id: str) -> JobKit:
        """A kit for the job `job_id`, which `release` ends. Cancelling the wait leaves the kit being made
        to the next job.

        Raises JobNetError when the job's network cannot be made, OSError when its folders cannot be."""
        if not self._spare and self._making is not None and not self._making.done():
            await asyncio.shield(self._making)  # the one on its way (the drone just started, or jobs came fast)
        while self._spare:
            kit = self._spare.pop(0)
            if kit.alive:
                self._refill()
                return kit
            log.warning("a job network kept ready had ended; making another")
            await self._discard(kit)
        # None ready (jobs started together): this job's own, and the next one to keep, side by side.
        self._refill()
        return await self._make(job_id, warm=False)

    def release(self, kit: JobKit) -> None:
        """The job is over: its network and an unused sandbox end (at once; reaped in the background)."""
        if kit.box is not None:
            kit.box.discard()
        if kit.net is not None:
            task = kit.net.close()
            self._reaping.add(task)
            task.add_done_callback(self._reaping.discard)

    async def _discard(self, kit: JobKit) -> None:
        """A kit no job will have: its network and sandbox end, its folders go."""
        self.release(kit)
        await self.workspaces.remove(kit.paths.workspace)
        await self.workspaces.remove(kit.paths.tmp)

    async def close(self) -> None:
        """End the kit kept ready and one being made; wait until every network has been reaped."""
        self._closed = True
        if self._making is not None:
            self._making.cancel()
            await asyncio.gather(self._making, return_exceptions=True)
        while self._spare:
            kit = self._spare.pop()
            await self._discard(kit)
        await asyncio.gather(*self._reaping, return_exceptions=True)

    def _refill(self) -> None:
        if (self.ahead or self.isolated) and not self._closed and len(self._spare) < SPARE and \
                (self._making is None or self._making.done()):
            self._making = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        # Not before the job that took the last one has started its first command: making a kit spawns
        # processes from this loop, which would hold that command up.
        await asyncio.sleep(KEEP_AFTER)
        started = time.monotonic()
        try:
            kit = await self._make("k-" + secrets.token_hex(8), warm=self.ahead)
        except Exception as exc:  # the job that wants one makes its own, and says why
            log.warning("a job kit could not be made ahead: %s", exc)
            return
        if self._closed:
            await self._discard(kit)
            return
        log.debug("a job kit is ready after %.1f ms", (time.monotonic() - started) * 1000)
        self._spare.append(kit)

    async def _make(self, name: str, warm: bool) -> JobKit:
        paths = JobPaths(self.workspaces.create(name), self.workspaces.create_tmp(name))
        kit = JobKit(paths)
        try:
            self.sandbox.prepare(paths)
            if self.isolated:
                try:
                    kit.net = await make(self.sandbox)
                except (OSError, ValueError, TimeoutError) as exc:
                    raise JobNetError(f"the job's network could not be made: {exc}") from exc
            if warm:
                kit.box = WarmBox.start(self.sandbox, paths, kit.net)
        except BaseException:
            await self._discard(kit)
            raise
        return kit
