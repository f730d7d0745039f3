"""apiary debug JOB: a shell in a failed job's kept workspace, in this terminal (apiary.queen.debugshells).

The terminal goes raw (what is typed goes to the shell as it is typed: Ctrl-C
reaches the shell, not this command) and is restored however the command
ends: the shell exits or idles out, the queen refuses, the connection drops,
or an error. A resize of this terminal (SIGWINCH) resizes the shell's.
Without a terminal (input from a pipe, a file, /dev/null) it refuses before
opening anything: "needs a terminal", exit status 2. Exit status: 0 when the
shell exited (the person's `exit`), 1 when it ended otherwise (idle, total,
its drone gone, closed by the queen) or no shell opened (the queen's reason
printed), as other client commands do.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
from typing import TYPE_CHECKING, Any

import aiohttp

from apiary.cli.client import ClientError, Unreachable, why

if TYPE_CHECKING:
    from apiary.cli.client import Client

READ = 4096  # bytes of typed input read at once


async def debug(client: Client, args: argparse.Namespace) -> int:
    from apiary.cli.remote import job_id

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    tty_in = os.isatty(stdin)
    if not tty_in:
        # A shell fed from a pipe would not know where its input ends (the PTY's end of file is a line of its
        # own), and a file or /dev/null cannot be watched for input: refused before a shell opens (and is recorded).
        _say("apiary: error: apiary debug needs a terminal: its input is not one (a pipe, a file or /dev/null)\n")
        return 2
    job = await job_id(client, args.job)
    cols, rows = shutil.get_terminal_size((80, 24))
    try:
        ws = await client.session.ws_connect(f"{client.url}/ws", heartbeat=20,
                                             timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Unreachable(client.url, why(exc), client.origin) from None
    saved = termios.tcgetattr(stdin) if tty_in else None
    loop = asyncio.get_running_loop()
    session: list[str] = []
    typed: asyncio.Queue[bytes] = asyncio.Queue()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def send(message: dict[str, Any]) -> None:
        await ws.send_str(json.dumps({"op": "debug", **message}))

    def on_input() -> None:
        try:
            data = os.read(stdin, READ)
        except OSError:
            data = b""
        typed.put_nowait(data)
        if not data:
            loop.remove_reader(stdin)

    def on_resize() -> None:
        if session:
            c, r = shutil.get_terminal_size((80, 24))
            loop.create_task(send({"action": "resize", "session": session[0], "rows": r, "cols": c}))

    async def pump() -> None:
        while True:
            data = await typed.get()
            if not session:
                continue
            if not data:  # end of input (a pipe): the shell gets its end too
                await send({"action": "input", "session": session[0], "data": "\x04"})
                return
            # Decoded across reads: a character cut between two reads is not turned into two replacements.
            await send({"action": "input", "session": session[0], "data": decoder.decode(data)})

    pumping: asyncio.Task[None] | None = None
    try:
        await send({"action": "open", "job": job, "rows": rows, "cols": cols})
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            item = json.loads(message.data)
            kind = item.get("type")
            if kind == "debug:opened" and not session:
                session.append(item["session"])
                _say(f"apiary: a shell in job {job} on drone {item.get('drone', 'its drone')}: it ends after "
                     f"{item['idle']:g} s without input or output, {item['total']:g} s at most; exit to leave\r\n")
                if saved is not None:
                    tty.setraw(stdin)
                loop.add_reader(stdin, on_input)
                loop.add_signal_handler(signal.SIGWINCH, on_resize)
                pumping = asyncio.create_task(pump())
            elif kind == "debug:output" and session and item.get("session") == session[0]:
                os.write(stdout, item["text"].encode())
            elif kind == "debug:closed" and session and item.get("session") == session[0]:
                detail = f" ({item['detail']})" if item.get("detail") else ""
                _restore(stdin, saved)
                _say(f"\r\napiary: the shell ended: {item['how']}{detail}\n")
                return 0 if item["how"] == "exited" else 1  # ended by anything but the person's own exit: a failure
            elif kind == "debug:refused":
                raise ClientError(f"no debug shell: {item.get('error')}")
            elif kind == "error":
                raise ClientError(str(item.get("error")))
        raise ClientError("the connection to the queen closed" + (" while the shell ran" if session else ""))
    finally:
        _restore(stdin, saved)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(stdin)
        with contextlib.suppress(ValueError, RuntimeError):
            loop.remove_signal_handler(signal.SIGWINCH)
        if pumping is not None:
            pumping.cancel()
        await ws.close()


def _restore(fd: int, saved: list[Any] | None) -> None:
    if saved is not None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _say(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser], job_help: str) -> None:
    """`apiary debug JOB`."""
    shell = command(sub, "debug", "a shell in a failed job's workspace, on its drone (kept when the repository's "
                                  "debug_keep setting is on or the pipeline says debug: {keep: true})", """
apiary debug app#7                      # exit (or Ctrl-D) leaves; the terminal is restored""", parents)
    shell.add_argument("job", help=job_help)
