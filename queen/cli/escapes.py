"""What of a job's output reaches the reader's terminal or file: text, and colours on a terminal.

A job's output may hold any terminal control sequence. Written to the reader's
terminal as it is, it would act there: retitle the window (OSC 0/2), write the
clipboard (OSC 52), switch the character set (ESC ( 0), move the cursor. So
only SGR colours and styles pass, and only to a terminal; every other escape
sequence (CSI, OSC up to BEL or ESC \\, DCS/SOS/PM/APC strings, two- and
three-byte escapes) and every control character but tab, newline, carriage
return and backspace is dropped. OSC 8 links keep their text, not their
address. Pure code: `Unescaper.feed` per chunk, one per output stream.
"""

from __future__ import annotations

import re

# One sequence (or control character) to drop; an OSC or string runs to its terminator or the end of its line.
_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"            # CSI; colours are those ending in m with plain parameters
    r"|\][^\x07\x1b\n]*(?:\x07|\x1b\\|(?=\n))"  # OSC
    r"|[PX^_][^\x1b]*\x1b\\"                    # DCS, SOS, PM, APC
    r"|[ -/]*[0-~])"                            # ESC ( B, ESC 7, ESC =, ...
    r"|[\x00-\x07\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")  # other controls, C1 too (a lone ESC among them)
_SGR = re.compile(r"\x1b\[[0-9;:]*m\Z")
# A sequence the chunk ends in the middle of: the next chunk has its rest.
_CUT = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b\n]*\x1b?|[PX^_][^\x1b]*\x1b?|[ -/]*)\Z")
MAX_CUT = 4096  # chars; a longer unfinished sequence is no sequence: it is dropped, what follows shows
_ANY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str, colours: bool) -> str:
    """`text` without control sequences; with `colours`, SGR sequences stay."""
    if not _ANY.search(text):
        return text
    if colours:
        return _SEQUENCE.sub(lambda m: m.group() if _SGR.match(m.group()) else "", text)
    return _SEQUENCE.sub("", text)


class Unescaper:
    """One output stream's text, chunk by chunk, as `visible` would make the whole of it."""

    def __init__(self, colours: bool) -> None:
        self.colours = colours
        self._cut = ""

    def feed(self, text: str) -> str:
        text = self._cut + text
        self._cut = ""
        start = max(0, len(text) - MAX_CUT)
        if "\x1b" in text[start:]:
            cut = _CUT.search(text, start)
            if cut:
                text, self._cut = text[:cut.start()], cut.group()
        return visible(text, self.colours)

    def end(self) -> None:
        """The stream has ended: a sequence still cut off never completes; it is no text."""
        self._cut = ""
