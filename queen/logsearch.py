"""Searching a job's stored command output: ``GET /api/v1/jobs/{id}/search?q=TEXT[&limit=N]``.

Answers ``{"matches": [{"num", "stream", "line", "text"}], "truncated": bool}``: the lines of each
command's output that hold `q`, case-insensitively, in the order they were stored. ``num`` is the
command's number, ``line`` the 0-based index of the line in that command's output and ``stream`` the
stream (stdout, stderr) that began the line. Lines are counted as the job page's log view counts
them (web/static/apiary.js, ``LogView.append``): a command's stdout and stderr chunks in seq order,
each split on "\\n", a chunk that does not end in a newline leaving its last line open for the next
chunk (of either stream), and a final empty part dropped. So the page can jump to (num, line) for a
line its virtual scroller has not drawn. Output outside a command (the drone's own messages) is not
searched. A line is searched as the page shows it, and the page's search looks in it
(apiary.core.shown.plain): colours, cursor moves, window titles and an OSC 8 link's address are not
text, a link's text is; after a carriage return only what was drawn last. ``text`` is that shown
text, at most TEXT_MAX characters of it.

Bounded: the output is read a page at a time through the store's reader (apiary.queen.store.events,
about 1 MiB of text per page, decompressed there), a line is matched across chunks without being
kept whole (only its first TEXT_MAX characters shown, the last ``len(q) - 1`` and an escape
sequence cut between two chunks), and the search stops at `limit` matches or SCAN_MAX bytes of
output (``truncated`` is then true). A match is counted once its line has ended (a carriage return
further on could still redraw the line), or at the end of the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

from apiary.core.errors import BadRequest
from apiary.core.protocol import Msg
from apiary.core.shown import LineText, has_controls, shown_lines

DEFAULT_MATCHES = 200
MAX_MATCHES = 1000
QUERY_MAX = 200  # characters
TEXT_MAX = 2000  # characters of a matching line returned
SCAN_MAX = 512 * 2**20  # bytes of output read at most for one search
_STREAMS = {Msg.JOB_CMD_STDOUT.value: "stdout", Msg.JOB_CMD_STDERR.value: "stderr"}


class Match(TypedDict):
    num: int
    stream: str
    line: int
    text: str


def search_query(value: str | None) -> str:
    """The `q` parameter, checked: 1 to QUERY_MAX characters, else BadRequest naming ``q``."""
    if not value:
        raise BadRequest("q: required: the text to find (1 to 200 characters)", field="q")
    if len(value) > QUERY_MAX:
        raise BadRequest(f"q: longer than {QUERY_MAX} characters", field="q")
    return value


@dataclass
class _Command:
    """Where one command's output stands: its lines so far and the open last one."""

    num: int
    lines: int = 0  # lines begun so far
    open: bool = False  # the last line has no newline yet
    carry: str = ""  # the open line's last len(q) - 1 characters, lower case
    match: Match | None = None  # the open line's match, if it has one (its text still growing)
    head: list[str] = field(default_factory=list)  # the open line's first TEXT_MAX characters shown
    head_size: int = 0
    stream: str = "stdout"
    shown: LineText = field(default_factory=LineText)  # what the open line shows, so far


class LineSearch:
    """Feed a job's output chunks in seq order (`feed`); `matches` are the lines holding the text.

    Pure, no I/O; stops taking matches beyond `limit` + 1 (then `full` is true).
    """

    def __init__(self, text: str, limit: int) -> None:
        self.needle = text.lower()
        self.limit = limit
        self.matches: list[Match] = []
        self.commands: dict[int, _Command] = {}
        self.open_matches = 0  # matches on lines not ended yet (a carriage return may still wipe them)

    @property
    def full(self) -> bool:
        return len(self.matches) - self.open_matches > self.limit

    def feed(self, num: int, stream: str, text: str) -> None:
        """One output chunk of command `num` on `stream`."""
        if not text:
            return
        cmd = self.commands.get(num) or self.commands.setdefault(num, _Command(num))
        if cmd.shown.clean and not has_controls(text):  # it shows as it is (most chunks)
            self._shown(cmd, stream, text)
            return
        # Escapes or carriage returns: the open line's end and the last line (which may hold a sequence
        # cut off) go piece by piece, the whole lines between as one block of the text they show.
        first = text.find("\n")
        if first < 0:
            if not cmd.open:
                self._begin(cmd, stream)
                cmd.open = True
            self._show(cmd, text)
            return
        if cmd.open:
            self._show(cmd, text[:first])
            self._close(cmd)
            cmd.open = False
            text = text[first + 1:]
        last = text.rfind("\n") + 1
        if last:
            self._shown(cmd, stream, shown_lines(text[:last]))
        if last < len(text):
            self._begin(cmd, stream)
            self._show(cmd, text[last:])
            cmd.open = True

    def _shown(self, cmd: _Command, stream: str, text: str) -> None:
        """`feed` for text as it shows (no sequence held back): counted in C unless it holds a match."""
        lowered = text.lower()
        if self.full or self.needle not in cmd.carry + lowered:
            self._count(cmd, stream, text, lowered)  # no match in it: count its lines, keep the open one
            return
        parts = text.split("\n")
        end = len(parts) - 1
        start = 0
        if cmd.open:
            self._more(cmd, parts[0])
            start = 1
            if end >= 1:
                self._close(cmd)
        for i in range(start, len(parts)):
            part = parts[i]
            if i == end and part == "":
                break
            self._begin(cmd, stream)
            self._more(cmd, part)
            if i < end:
                self._close(cmd)
        cmd.open = not text.endswith("\n")

    def _show(self, cmd: _Command, part: str) -> None:
        """More of the open line, as raw output: what it shows goes to `_more`."""
        wiped, text = cmd.shown.feed(part)
        if wiped:  # a carriage return redrew the line: what it showed before is gone
            self._wipe(cmd)
        if text:
            self._more(cmd, text)

    def _count(self, cmd: _Command, stream: str, text: str, lowered: str) -> None:
        """`feed` for a chunk that holds no match (most of them): the same lines, counted in C."""
        newlines = text.count("\n")
        ends = text.endswith("\n")
        if newlines == 0:  # all of it one line: the open one goes on, or it is a new one
            if not cmd.open:
                self._begin(cmd, stream)
            self._more(cmd, text, lowered)
            cmd.open = True
            return
        if cmd.open and cmd.match is not None:  # the end of a line that matched: its text
            self._more(cmd, text[:text.index("\n")])
        cmd.lines += newlines - ends + (0 if cmd.open else 1)
        self._close(cmd)
        if not ends:
            cmd.lines -= 1  # _begin counts the open last line again
            last = text.rsplit("\n", 1)[1]
            self._begin(cmd, stream)
            self._more(cmd, last, lowered[len(lowered) - len(last):] if len(lowered) == len(text) else last.lower())
        cmd.open = not ends

    def _begin(self, cmd: _Command, stream: str) -> None:
        cmd.lines += 1
        cmd.carry, cmd.head, cmd.head_size, cmd.stream = "", [], 0, stream
        if cmd.match is not None:
            cmd.match = None
            self.open_matches -= 1

    def _more(self, cmd: _Command, part: str, lowered: str | None = None) -> None:
        """More of the open line: keep its head, and match across the join with what came before
        (`lowered`: `part` in lower case, when the caller has it)."""
        if cmd.head_size < TEXT_MAX:
            piece = part[:TEXT_MAX - cmd.head_size]
            cmd.head.append(piece)
            cmd.head_size += len(piece)
            if cmd.match is not None:
                cmd.match["text"] = "".join(cmd.head)
        if cmd.match is None and not self.full:
            lowered = part.lower() if lowered is None else lowered
            if self.needle in cmd.carry + lowered:
                cmd.match = {"num": cmd.num, "stream": cmd.stream, "line": cmd.lines - 1, "text": "".join(cmd.head)}
                self.matches.append(cmd.match)
                self.open_matches += 1
            keep = len(self.needle) - 1
            cmd.carry = (cmd.carry + lowered)[-keep:] if keep else ""

    def _wipe(self, cmd: _Command) -> None:
        """The open line is drawn again from its start: its match so far is none."""
        if cmd.match is not None:
            self.matches = [m for m in self.matches if m is not cmd.match]
            self.open_matches -= 1
        cmd.carry, cmd.match, cmd.head, cmd.head_size = "", None, [], 0

    def _close(self, cmd: _Command) -> None:
        """The open line ends: what its last piece held back is shown, its match is counted."""
        if not cmd.shown.clean:
            rest = cmd.shown.end()
            if rest:
                self._more(cmd, rest)
        if cmd.match is not None:
            self.open_matches -= 1
        cmd.carry, cmd.match, cmd.head, cmd.head_size = "", None, [], 0

    def result(self) -> dict[str, Any]:
        """{"matches": the first `limit`, "truncated": whether there are more (or the search stopped)}.

        A line still open at the end of the output stands as it is drawn so far."""
        for cmd in self.commands.values():
            if cmd.open and not cmd.shown.clean:
                rest = cmd.shown.end()
                if rest:
                    self._more(cmd, rest)
        return {"matches": self.matches[:self.limit], "truncated": len(self.matches) > self.limit}


async def search_output(store: Any, job_id: str, text: str, limit: int) -> dict[str, Any]:
    """Search job `job_id`'s stored command output for `text` (the module's docstring has the shape)."""
    search = LineSearch(text, limit)
    after, scanned, stopped = 0, 0, False
    while not search.full:
        events, more = await store.events_after(job_id, after)
        for event in events:
            after = event["seq"]
            stream = _STREAMS.get(event.get("type", ""))
            if stream is None or not isinstance(event.get("num"), int):
                continue
            chunk = event.get("text") or ""
            scanned += len(chunk)
            search.feed(event["num"], stream, chunk)
            if search.full:
                break
        if not more:
            break
        if scanned >= SCAN_MAX:
            stopped = True
            break
    out = search.result()
    out["truncated"] = out["truncated"] or stopped
    return out
