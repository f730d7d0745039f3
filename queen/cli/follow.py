"""Showing a job in a terminal: `Follower` shows a job's events as they are stored, over the
WebSocket, and outlives a queen restart: it reconnects and resubscribes after the last seq it
showed, so no line is lost or doubled. `Renderer` writes events as `apiary run` does; ANSI
colours pass through to a terminal and are stripped from anything else, and every other control
sequence (titles, links, character sets) from both (apiary.cli.escapes). Tables and times for
`apiary ls` and `apiary drones`.

A followed job's result becomes the exit status (RESULT_CODES): passed 0,
failed 1, errored 3, cancelled 130 (as a shell reports an interrupted command).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

import aiohttp

from apiary.cli.client import ApiError, Client, ClientError, Unreachable, q, why
from apiary.cli.escapes import Unescaper
from apiary.core.jobstate import final_status
from apiary.core.outcome import plain, shell_signal, signal_name
from apiary.core.protocol import FINAL_STATES
from apiary.core.reports import counts_line

RESULT_CODES = {"passed": 0, "failed": 1, "errored": 3, "cancelled": 130}
RECONNECT_FOR = 600.0  # a follower gives up on a queen that stays away this long
MAX_RECONNECT_DELAY = 3.0
_FINAL = {s.value for s in FINAL_STATES}


def whoami() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no passwd entry (containers)
        return "unknown"


def span(seconds: float) -> str:
    """A duration for a table: 4.2s, 3m05s, 2h10m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def age(since: float | None, now: float) -> str:
    """How long ago: 5s, 3m, 2h, 4d."""
    if not since:
        return "-"
    s = max(0.0, now - since)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def table(headers: list[str], rows: list[list[str]], paint: Callable[[int, str, str], str] | None = None) -> str:
    """Left-aligned columns; `paint(column, value, padded)` may colour a cell after padding."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for n, row in enumerate([headers, *rows]):
        cells = [v.ljust(w) for v, w in zip(row, widths)]
        if paint and n:
            cells = [paint(i, v, c) for i, (v, c) in enumerate(zip(row, cells))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def shown_attempt(attempt: int, job: dict[str, Any]) -> int:
    """Attempt `attempt` of `job` as people count them (against ``max_attempts``): a parent going on after its
    child jobs (a ``children`` record of its history) goes on with the same attempt."""
    waits = [r for r in (job.get("history") or {}).values() if isinstance(r, dict) and r.get("children")
             and isinstance(r.get("attempt"), int) and r["attempt"] < attempt]
    return attempt - len(waits)


def paint(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on else text


def colour_on(stream: TextIO) -> bool:
    """Our own colours: on a terminal, unless NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


_MARKS = {"passed": "✓", "failed": "✗", "skipped": "↷", "cancelled": "⊘", "running": "●", "waiting": "…",
          "not_run": "–"}


def exit_text(exit_code: Any, named: str | None) -> str:
    """"139 (SIGSEGV)" for an exit code a signal explains, else the code alone."""
    return f"{exit_code} ({named})" if named else f"{exit_code}"


def summary_lines(outcome: dict[str, Any], page: str) -> list[str]:
    """The failure summary a followed job ends with (the job page's box, as text), from its outcome
    (GET /api/v1/jobs/ID/outcome, apiary.core.outcome): nothing for a job that passed or still runs.
    Last lines lose their terminal sequences (they were shown above as the job printed them)."""
    status = outcome.get("status")
    failure = outcome.get("failure")
    stages = outcome.get("stages") or []
    lines: list[str] = []
    anchor = None
    if failure:
        word = "Errored" if status == "errored" else "Failed"
        if failure.get("num") is not None:
            how = (f"killed by {failure['signal']}" if failure.get("signal") else
                   "it never ended (its drone was lost)" if failure.get("exitCode") is None else
                   f"exit code {exit_text(failure['exitCode'], failure.get('shell_signal'))}")
            lines.append(f"{word} in stage {failure.get('stage')}: {failure.get('title')}, {how} "
                         f"(command {failure['num']})")
            if failure.get("error"):
                lines.append(f"  {failure['error']}")
            for other in failure.get("also") or []:
                lines.append(f"  also failed: stage {other.get('stage')}: {other.get('title')} (command {other.get('num')})")
            if status == "cancelled":
                lines.append("  then the job was cancelled")
            lines += [f"  │ {plain(line)}" for line in failure.get("last_lines") or []]
            anchor = failure.get("anchor")
        else:
            lines.append(f"{word}: {failure.get('error') or 'no command failed'}")
    elif status == "cancelled":
        stopped = next(({"stage": s["name"], **c} for s in stages for c in s.get("commands") or []
                        if c.get("status") == "cancelled"), None)
        if stopped is None:
            lines.append("Cancelled before any stage ran" if not any(s.get("started") for s in stages)
                         else "Cancelled between two commands")
        else:
            lines.append(f"Cancelled in stage {stopped['stage']}: {stopped['title']} (command {stopped['num']})")
            anchor = f"cmd-{stopped['num']}" if stopped.get("num") is not None else None
    else:
        return []
    if stages:
        parts = []
        for s in stages:
            part = f"{s['name']} {_MARKS.get(s['status'], '')} {s['status'].replace('_', ' ')}"
            if s.get("duration") is not None:
                part += f" {span(s['duration'])}"
            if s.get("reason") and s["status"] in ("skipped", "not_run"):
                part += f" ({s['reason']})"
            parts.append(part)
        lines.append("stages: " + " · ".join(parts))
    lines.append(f"log: {page}#{anchor}" if anchor else f"page: {page}")
    return lines


class Renderer:
    """Writes a job's events as a person reads them: headers, output, exit codes, the result."""

    def __init__(self, out: TextIO, err: TextIO, before_write: Callable[[], None] = lambda: None) -> None:
        self.out, self.err = out, err
        self.before_write = before_write  # clears the progress line first
        self.colour = colour_on(out)
        self.raw = {id(out): out.isatty(), id(err): err.isatty()}  # colours pass through to a terminal
        self.at_start = {id(out): True, id(err): True}
        # Per stream and command: a sequence may be cut in two between events.
        self.tails: dict[tuple[int, Any], Unescaper] = {}
        self.started: float | None = None
        self.result: str | None = None
        self.shown = False  # anything about the job's run written yet
        # Parallel stages interleave: each command's "[phase/stage] title", and the one whose header is the last
        # written (a line of another command gets a header of its own first, its end line names it).
        self.names: dict[Any, str] = {}
        self.under: Any = None

    def event(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind == "job:started":
            self.started = self.started or e.get("timestamp")  # a continuation's: the job's time goes on
        elif kind == "job:cmd:start":
            where = "/".join(str(e[k]) for k in ("phase", "stage", "hook") if e.get(k))
            title = e.get("title") or e.get("screencmd", "")
            retry = e.get("retry")  # a step with a retry (apiary.core.retry)
            shown = title + (f" (attempt {retry.get('attempt')} of {retry.get('of')})" if isinstance(retry, dict)
                             else "")
            self.names[e.get("num")] = f"[{where}] {shown}"
            self.under = e.get("num")
            self._line("\n" + paint(f"▶ [{where}] {shown}", "1;36", self.colour))
            if e.get("screencmd") and e["screencmd"] != title:
                self._line(paint(f"$ {e['screencmd']}", "2", self.colour))
        elif kind in ("job:cmd:stdout", "job:cmd:stderr"):
            self._switch_to(e.get("num"))
            self._text(self.out if kind == "job:cmd:stdout" else self.err, e.get("num"), e.get("text", ""))
        elif kind in ("job:stdout", "job:stderr"):
            self._text(self.out if kind == "job:stdout" else self.err, None, e.get("text", ""))
        elif kind == "job:cmd:done":
            num = e.get("num")
            self._flush_tails(num)
            code = e.get("exitCode")
            ended = (f"killed by {signal_name(code)}" if isinstance(code, int) and code < 0 else
                     f"exit {exit_text(code, shell_signal(code))}")
            if e.get("timedOut"):  # its step's own timeout stopped it
                ended = f"timed out, {ended}"
            if code == 0:
                mark = paint("✓", "32", self.colour)
            elif e.get("stopped"):  # the drone stopped it (a cancel, a timeout, the drone stopping): no failure of its own
                mark = paint(f"⊘ stopped, {ended}", "33", self.colour)
            else:
                mark = paint(f"✗ {ended}", "31", self.colour)
            if num == self.under or num not in self.names:
                self._line(f"{mark} {e.get('duration', 0):.2f}s")
            else:  # under another command's header: say whose end this is
                self._line(f"{mark} {self.names[num]} {e.get('duration', 0):.2f}s")
                self.under = None
        elif kind == "job:plugin" and isinstance(e.get("data"), dict):
            figures = ", ".join(f"{k} {v}" for k, v in e["data"].items())
            self._line(paint(f"plugin {e.get('plugin')}: {figures}", "2", self.colour))
        elif kind == "job:report" and isinstance(e.get("counts"), dict):  # the test report's (apiary.core.reports)
            bad = any(e["counts"].get(k) for k in ("failed", "errors"))
            self._line(paint(counts_line(e["counts"]), "1;31" if bad else "1;32", self.colour))
        elif kind == "job:artifact" and e.get("part") == e.get("parts", 1) - 1:
            self._line(f"artifact: {e.get('name')} ({e.get('size', 0):,} bytes)")
        elif kind == "job:done":
            took = e["timestamp"] - self.started if self.started and e.get("timestamp") else None
            self.ended(final_status(e.get("result")).value, e.get("error"), took)

    def ended(self, status: str, error: str | None = None, took: float | None = None) -> None:
        """The closing line; also for a job that ended with no job:done (cancelled in the queue)."""
        self._flush_tails(None, every=True)
        self.result = status
        why = f" ({error})" if error and error != status else ""
        when = f" in {took:.2f}s" if took is not None else ""
        self._line(paint(f"Job {status}{why}{when}", "1;32" if status == "passed" else "1;31", self.colour))

    def between(self, text: str, same_run: bool = False) -> None:
        """A line between two attempts of the job; the next attempt's commands start afresh. `same_run`: the
        attempt goes on from the last one's wait for its child jobs (its time counts from the first start)."""
        self._flush_tails(None, every=True)
        self._line(paint(text, "1;33", self.colour))
        self.names, self.under = {}, None
        if not same_run:
            self.started = None

    def _switch_to(self, num: Any) -> None:
        """A command's output is next: under its own header, written again if another's came since."""
        if num != self.under and num in self.names:
            self.under = num
            self._line(paint(f"… {self.names[num]}", "36", self.colour))

    def summary(self, outcome: dict[str, Any], page: str) -> None:
        """The failure summary at the end: what failed (or what a cancel stopped), its last lines, the stages."""
        lines = summary_lines(outcome, page)
        if not lines:
            return
        self._flush_tails(None, every=True)
        head, *rest = lines
        self._line(paint(head, "1;31" if outcome.get("status") != "cancelled" else "1;33", self.colour))
        for line in rest:
            self._line(line)

    def _text(self, stream: TextIO, num: Any, text: str) -> None:
        key = (id(stream), num)
        unescaper = self.tails.get(key)
        if unescaper is None:
            unescaper = self.tails[key] = Unescaper(colours=self.raw[id(stream)])
        self._write(stream, unescaper.feed(text))

    def _flush_tails(self, num: Any, every: bool = False) -> None:
        # A cut escape that never completed is dropped: it is no text.
        for key in [k for k in self.tails if every or k[1] == num]:
            del self.tails[key]

    def _line(self, text: str) -> None:
        for stream in (self.err, self.out):  # a command's last line may lack its newline
            if not self.at_start[id(stream)]:
                self._write(stream, "\n")
        self._write(self.out, text + "\n")

    def _write(self, stream: TextIO, text: str) -> None:
        if not text:
            return
        self.shown = True
        self.before_write()
        if stream is self.err:
            self.out.flush()  # keep the two streams in the order the job wrote them
        stream.write(text)
        stream.flush()
        self.at_start[id(stream)] = text.endswith("\n")


class Progress:
    """One line on stderr saying what we wait for: redrawn each second on a terminal, else printed once."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.text: str | None = None
        self.since = time.monotonic()
        self.drawn = False

    def set(self, text: str | None) -> None:
        if text == self.text:
            return
        self.clear()
        self.text, self.since = text, time.monotonic()
        if text and self.tty:
            self.draw()
        elif text:
            self.err.write(text + "\n")
            self.err.flush()

    def draw(self) -> None:
        if self.text:
            s = int(time.monotonic() - self.since)
            self.err.write(f"\r\x1b[K{self.text} ({s // 60}:{s % 60:02d})")
            self.err.flush()
            self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.drawn = False

    async def tick(self) -> None:
        while self.tty:
            await asyncio.sleep(1)
            self.draw()


class Follower:
    """Shows one job's events until it ends, live over the WebSocket, across reconnects.

    A job may run more than once (its drone was lost or stopped mid-job: the queen runs it again, as attempt 2,
    3 …). The job's end is its document's final status, not an attempt's job:done: a job:done is held until the
    document says whether the job is final; if it is not, one line says which attempt ended and why, and the next
    attempt's output follows."""

    def __init__(self, client: Client, job: dict[str, Any], out: TextIO, err: TextIO) -> None:
        self.client = client
        self.job_id: str = job["id"]
        self.progress = Progress(err)
        self.renderer = Renderer(out, err, before_write=self.progress.clear)
        self.last = 0  # the seq of the last event shown
        self.status, self.drone = job.get("status", ""), job.get("drone") or ""
        self.attempt = 0  # the attempt of the last event shown (0: none yet)
        self.held: dict[str, Any] | None = None  # a job:done, until the job says whether it was its end
        self.over: set[int] = set()  # attempts whose end was said

    def note(self, update: dict[str, Any]) -> None:
        """A job document or job:update: what the progress line says while nothing else shows."""
        self.status = update.get("status") or self.status
        self.drone = update.get("drone") or self.drone
        if self.renderer.shown or self.status in _FINAL:
            self.progress.set(None)
            return
        self.progress.set({"queued": "queued… waiting for a drone",
                           "dispatched": f"dispatched to {self.drone}… waiting for it to start",
                           "running": f"running on {self.drone}… waiting for output"}.get(self.status))

    async def show(self, event: dict[str, Any]) -> None:
        if event["seq"] <= self.last:
            return  # already shown before a reconnect
        self.last = event["seq"]
        attempt = int(event.get("attempt") or 1)
        if attempt > self.attempt:
            if self.attempt and self.attempt not in self.over:
                self.attempt_over(self.attempt, await self.client.job(self.job_id))  # lost with no job:done
            self.attempt, self.held = attempt, None
        if event.get("type") == "job:done":
            self.held = event
            await self.settle()
        else:
            self.renderer.event(event)
        if self.renderer.shown:
            self.progress.set(None)

    async def settle(self) -> None:
        """After an attempt's job:done, or a change of the job: end the job if it is final, or say that the
        attempt shown ended if the queen runs the job again. Nothing while the document has not moved yet."""
        if self.renderer.result or not self.attempt or self.attempt in self.over:
            return
        job = await self.client.job(self.job_id)
        self.note(job)
        shown = self.held is not None or self.renderer.started is not None  # something of this attempt was shown
        if shown and int(job.get("attempts") or 0) > self.attempt:
            self.attempt_over(self.attempt, job)  # a later attempt runs (or ran: apiary logs of an ended job)
        elif job["status"] in _FINAL:
            if self.held is None:
                # The document is ahead of the events shown (a late job:update, the job over meanwhile): what
                # is stored comes first, its job:done settling the job; else its end would come before them.
                await self.stored()
            if not self.renderer.result:
                self.finish(job)
        elif shown and job["status"] == "queued":
            self.attempt_over(self.attempt, job)

    def attempt_over(self, attempt: int, job: dict[str, Any]) -> None:
        """The line between two attempts: which ended, why (the job's history, else its job:done)."""
        record = (job.get("history") or {}).get(str(attempt))
        held = self.held or {}
        reason = ((record.get("reason") if isinstance(record, dict) else None) or held.get("error")
                  or held.get("result") or "it ended")
        decided = (job.get("approvals") or [{}])[-1]
        if isinstance(record, dict) and record.get("gate") and decided.get("decision") == "approved":
            # Not a retry: the job stopped at its approval gate, somebody approved, it goes on (apiary.core.approvals)
            self.renderer.between(f"stage {decided.get('stage')} approved by {decided.get('by')}: the job goes on "
                                  f"(attempt {attempt + 1})")
        elif isinstance(record, dict) and record.get("children"):  # its child jobs ended: it goes on from them
            self.renderer.between("its child jobs ended: the job goes on", same_run=True)  # the same attempt to people
        else:
            n = shown_attempt(attempt, job)
            self.renderer.between(f"attempt {n} ended: {reason}; the queen runs it again (attempt {n + 1})")
        self.over.add(attempt)
        self.held = None

    def finish(self, job: dict[str, Any]) -> None:
        """The closing line: the job's final status, its error, and how long its last attempt took."""
        held = self.held if self.held and int(self.held.get("attempt") or 1) >= int(job.get("attempts") or 1) else None
        if held is not None and held.get("timestamp") and self.renderer.started:
            took: float | None = held["timestamp"] - self.renderer.started
        else:
            took = job["finished"] - job["started"] if job.get("started") and job.get("finished") else None
        if job.get("children") and isinstance(job.get("duration"), (int, float)):
            took = job["duration"]  # a parent's time runs from its first start, its wait for its children included
        error = job.get("error") or (held or {}).get("error")
        self.renderer.ended(job["status"], error, took)
        self.held = None

    async def stored(self) -> None:
        """Show the events stored so far (the REST API, page by page)."""
        async for event in self.client.events(self.job_id, self.last):
            await self.show(event)

    async def run(self) -> int:
        """Follow the job to its end; the exit status its result means."""
        ticker = asyncio.create_task(self.progress.tick())
        try:
            self.note({})
            status = self.renderer.result or await self._follow()
        finally:
            ticker.cancel()
            self.progress.set(None)
        await self.summarize()
        return RESULT_CODES.get(status, RESULT_CODES["errored"])

    async def summarize(self) -> None:
        """End with what failed (the queen's outcome of the job), as the job page does; nothing if it passed."""
        if self.renderer.result in (None, "passed"):
            return
        try:
            outcome = await self.client.request("GET", f"/jobs/{q(self.job_id)}/outcome")
        except ClientError:  # a queen from before the outcome, or gone meanwhile: the closing line said enough
            return
        self.renderer.summary(outcome, self.client.page(self.job_id))

    async def _follow(self) -> str:
        delay, lost = 0.2, 0.0
        while True:
            try:
                async with self.client.session.ws_connect(
                        f"{self.client.url}/ws", heartbeat=10,
                        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5)) as ws:
                    delay, lost = 0.2, 0.0
                    result = await self._listen(ws)
                    if result:
                        return result
                    reason = "the queen closed the connection"
            except Unreachable as exc:
                reason = exc.reason
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                reason = why(exc)
            lost = lost or time.monotonic()
            if time.monotonic() - lost > RECONNECT_FOR:
                raise ClientError(f"lost the queen at {self.client.url} for {RECONNECT_FOR / 60:.0f} minutes: {reason}")
            self.progress.set(f"lost the queen ({reason}); reconnecting…")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        """One connection: the job's result, or None when the connection ends first."""
        # The job topic first: a job:update seen on "jobs" then comes after the events stored before it.
        await ws.send_json({"op": "subscribe", "topic": "job", "job": self.job_id, "after": self.last})
        await ws.send_json({"op": "subscribe", "topic": "jobs"})
        self.note(await self.client.job(self.job_id))  # after subscribing: no change falls in between
        ended_meanwhile = self.status in _FINAL
        await self.settle()  # a job:done held when the last connection ended
        if self.renderer.result:
            return self.renderer.result
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if message.get("job") != self.job_id:
                continue
            kind = message.get("type")
            if "seq" in message:
                await self.show(message)
                if self.renderer.result:
                    return self.renderer.result
            elif kind == "error":
                raise ApiError(str(message.get("error")), 404)
            elif kind in ("job:new", "job:update"):
                self.note(message)
                if self.status in _FINAL:
                    return await self.ended()
                await self.settle()  # queued again after an attempt: say so before the next one's output
            elif kind == "subscribed" and ended_meanwhile:
                return await self.ended()
        return None

    async def ended(self) -> str:
        """The job is final: show what is stored after the last seq, then its end as its document says."""
        await self.stored()
        if not self.renderer.result:
            self.finish(await self.client.job(self.job_id))
        assert self.renderer.result is not None
        return self.renderer.result
