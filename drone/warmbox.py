"""A command's sandbox made before the command is known, so that a job's first command starts at once.

Making a command's sandbox is most of what a short command costs: ``prlimit``, ``nsenter``, bubblewrap's
namespaces and mounts, ``setpriv`` and the shell, about 6 ms of the 10 ms a ``true`` took from start to
end. What the sandbox needs (the job's workspace and /tmp, its network, its limits and user) is known
before the job comes (jobkit.py makes them ahead), the command and its environment are not. So a
`WarmBox` is that sandbox, started with a *launcher* in place of the command: a shell that waits for its
script on stdin, a pipe only the drone writes::

    eval "$(/bin/cat)"

When the command comes the drone writes one line and closes the pipe::

    exec /usr/bin/env -i -- 'NAME=value'… /bin/sh -c 'COMMAND' </dev/null

and the launcher becomes the command (exec all the way, so its exit status and signals are the
command's own, as when started cold), with the very environment, stdin, cwd and limits a cold start
gives it: env -i leaves nothing of the launcher's. The script is read through an inherited pipe, never
a file the job could write.

Only a command that asks for nothing else fits (`fits`): the job's network (not the checkout's own,
``host``) and two pipes for its streams (not one, ``merge_output``). A box no command took is
`discard`ed when its job ends. Errors: `start` raises OSError when the sandbox cannot be started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import subprocess
from collections.abc import Mapping

from .jobnet import JobNet
from .processes import kill_group, reaped
from .sandbox import JobPaths, Sandbox

log = logging.getLogger(__name__)

# coreutils' (Debian's merged /usr has both): the launcher reads with cat, the command starts with env -i.
CAT = "/bin/cat"
ENV = "/usr/bin/env"
LAUNCHER = f'eval "$({CAT})"'
# A script longer than this (an environment of many large secrets) starts cold: one write into the pipe,
# never a wait on the launcher from the event loop.
SCRIPT_MAX = 60 * 1024


def launch_script(command: str, env: Mapping[str, str]) -> bytes | None:
    """The line that turns the launcher into ``/bin/sh -c command`` with exactly `env`; None when the
    command must start cold instead (a name env would read as something else, a script too long). Pure."""
    if any(not name or "=" in name or "\0" in name or "\0" in value for name, value in env.items()) \
            or "\0" in command:
        return None
    words = [ENV, "-i", "--", *(f"{name}={value}" for name, value in env.items()), "/bin/sh", "-c", command]
    script = ("exec " + " ".join(shlex.quote(word) for word in words) + " </dev/null\n").encode()
    return script if len(script) <= SCRIPT_MAX else None


class WarmBox:
    """A sandbox started for a job's next command; `launch` gives it the command, once."""

    def __init__(self, proc: subprocess.Popen[bytes], joined: JobNet | None) -> None:
        self.proc = proc
        self.joined = joined
        self.taken = False
        self._reaping: asyncio.Task[bool] | None = None

    @classmethod
    def start(cls, sandbox: Sandbox, paths: JobPaths, job_net: JobNet | None) -> WarmBox:
        """The sandbox a command of the job with `paths` (and `job_net`, when its network is isolated) would
        get, waiting for it. Raises OSError when it cannot start."""
        join = job_net if sandbox.network == "isolated" and job_net is not None else None
        argv = sandbox.command(["/bin/sh", "-c", LAUNCHER], paths,
                               join=join.namespaces if join is not None else ())
        proc = subprocess.Popen(argv, cwd=paths.workspace, env={}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                pass_fds=join.fds if join is not None else ())
        return cls(proc, join)

    @property
    def alive(self) -> bool:
        return not self.taken and self.proc.poll() is None and (self.joined is None or self.joined.alive)

    def fits(self, network: str | None, merge_output: bool) -> bool:
        """Whether a command asking for `network` (None: the job's) and `merge_output` may start here."""
        return network is None and not merge_output and self.alive

    def launch(self, command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
        """Start `command` with `env` in the box; its process (the box's) then belongs to the caller. None
        when it must start cold instead (`launch_script`, or the box gone): the box is discarded then."""
        script = launch_script(command, env)
        stdin = self.proc.stdin
        if script is None or stdin is None or not self.alive:
            self.discard()
            return None
        self.taken = True
        try:
            os.write(stdin.fileno(), script)  # within a pipe's buffer (SCRIPT_MAX): never blocks
        except OSError as exc:  # the launcher ended meanwhile
            log.warning("a sandbox made ahead could not take its command (%s): starting it anew", exc)
            self.taken = False
            self.discard()
            return None
        finally:
            stdin.close()
        return self.proc

    def discard(self) -> None:
        """Not used: end it (at once; reaped in the background)."""
        if self.taken or self._reaping is not None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        kill_group(self.proc.pid)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self._reaping = asyncio.get_running_loop().create_task(reaped(self.proc, 5.0))
