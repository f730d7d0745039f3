"""The text a line of a job's output shows: what the job page draws of it, without colours. Pure, no I/O.

One definition for the page, the API and the CLI: `plain(line)` is web/static/apiary.js's
``visible()`` (what the page's log view draws with ``ansi()`` and what its search looks in), so
that a search through the API finds what a reader sees, and a failure's last lines read as on the
page. A terminal acts on, rather than shows: CSI sequences (colours, cursor moves), OSC strings up to
BEL or ESC \\ (window titles; an OSC 8 link shows its text, never its address; an unended one runs
to the end of the line), DCS/SOS/PM/APC strings, other escapes (ESC ( B) and control characters but
tab. A carriage return redraws the line: only what follows the last one shows (one at the very end
is dropped first, as a CRLF's). `shown_lines` does the same for many lines at once.

`LineText` gives the same text for a line that comes in pieces (a job's output chunks), keeping
only an escape sequence cut off at a piece's end (at most HOLD_MAX characters of it).
"""

from __future__ import annotations

import re

# apiary.js's SEQ, alternative for alternative ($ there is \Z here: the end of the line).
_SEQ = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\|\Z)|[PX^_][^\x1b]*(?:\x1b\\|\Z)"
                  r"|[ -/]*[0-~]|\Z)|[\x00-\x08\x0b-\x1f\x7f]")
# The same where the line goes on (the end of a piece): no alternative may end there.
_SEQ_MID = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\"
                      r"|[ -/]*[0-~])|[\x00-\x08\x0b-\x1f\x7f]")
# A sequence the end of a piece cut off (apiary.js's CUT): the next piece decides what it is.
_CUT = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[PX^_][^\x1b]*\x1b?|[ -/]*)\Z")
# _SEQ's escapes for many lines at once: none goes past the end of its line ("\n"), where \Z was; the
# control characters left (an ESC none of them starts among them) go after, as _SEQ's last alternative
# would have taken them (a regex with a literal first character scans three times faster).
_ESC_LINES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n|\Z))"
                        r"|[PX^_][^\x1b\n]*(?:\x1b\\|(?=\n|\Z))|[ -/]*[0-~]|(?=\n|\Z))")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CR_AT_END = re.compile(r"\r(?=\n|\Z)")  # one carriage return ending a line: dropped first
_REDRAWN = re.compile(r"(?m)^[^\n]*\r")  # a line up to its last carriage return: drawn over
# The same characters, for `in` (a memchr each): 31 of them are faster to look for than the class.
_CONTROLS = ("\x1b", "\r", *(chr(i) for i in range(0x20) if i not in (0x09, 0x0a, 0x0d, 0x1b)), "\x7f")
HOLD_MAX = 4096  # characters of a cut-off sequence kept (a longer OSC string's middle is dropped)


def plain(line: str) -> str:
    """What the job page shows of `line` (one line, without its "\\n"), colours and links aside."""
    line = line.removesuffix("\r")
    cr = line.rfind("\r")
    if cr >= 0:
        line = line[cr + 1:]
    if not has_controls(line):
        return line
    return _SEQ.sub("", line)


def shown_lines(text: str) -> str:
    """`plain` of each line of `text` (lines split on "\n", which stay): the same, faster for many lines."""
    if not has_controls(text):
        return text
    if "\r" in text:
        text = _REDRAWN.sub("", _CR_AT_END.sub("", text))
    if "\x1b" in text:
        text = _ESC_LINES.sub("", text)
    return _CONTROL.sub("", text) if has_controls(text) else text


def has_controls(text: str) -> bool:
    """Whether `text` holds anything `plain` would change (an escape, a carriage return, a control)."""
    for char in _CONTROLS:  # a loop, not any() of a generator: a little faster
        if char in text:
            return True
    return False


class LineText:
    """One line's shown text, fed in pieces without "\\n": the same as `plain` of the pieces joined.

    `feed` returns (wiped, text): whether what the line showed so far is gone (a carriage return with
    more after it redraws the line), and the text the piece adds after that. `end` gives what the
    line's last piece held back and readies this for the next line.
    """

    def __init__(self) -> None:
        self.held = ""  # an escape sequence cut off at the end of the last piece
        self.cr = False  # the last piece ended in a carriage return (dropped if the line ends there)

    @property
    def clean(self) -> bool:
        """Nothing held back: a piece without controls shows as it is."""
        return not self.held and not self.cr

    def feed(self, piece: str) -> tuple[bool, str]:
        wiped, out = False, []
        for i, part in enumerate(piece.split("\r")):
            if i:
                if self.cr:  # a carriage return after a carriage return
                    wiped, out, self.held = True, [], ""
                self.cr = True
            if part:
                if self.cr:
                    wiped, out, self.held, self.cr = True, [], "", False
                out.append(self._part(part))
        return wiped, "".join(out)

    def _part(self, part: str) -> str:
        data = self.held + part if self.held else part
        if not self.held and not has_controls(part):
            return part
        cut = _CUT.search(data)
        if cut:
            held = data[cut.start():]
            self.held = held if len(held) <= HOLD_MAX else held[:HOLD_MAX - 1] + held[-1]  # its end decides
            data = data[:cut.start()]
        else:
            self.held = ""
        return _SEQ_MID.sub("", data)

    def end(self) -> str:
        """The line ends: what the sequence held back shows (an unended one shows nothing)."""
        held, self.held, self.cr = self.held, "", False
        return _SEQ.sub("", held) if held else ""
