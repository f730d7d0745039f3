"""Masks repository secrets in everything that leaves the drone: commands shown, errors, output.

A secret leaks in more shapes than its plain value, so a `Masker` also masks its
*forms*: base64 (standard and URL-safe, with and without ``=`` padding),
URL-encoded (``quote(safe="")`` and ``quote_plus``), and for a multi-line value
each line on its own and the value with ``\\r\\n`` line endings. Where
occurrences overlap (one secret inside another, or two sharing chars), the whole
overlapping run becomes one mask, so no part of a secret is ever left showing.

Output arrives in chunks and a secret may straddle two of them: a
`MaskingStream` (one per output stream) holds back only a tail that could still
be the start of a form, and emits it once the next chunk (or `flush`) settles it.
Whatever the chunking, a stream's output equals `Masker.mask` of the whole text.
Pure code: no I/O, no clocks.
"""

from __future__ import annotations

import base64
import re
from bisect import bisect_right
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_VALUE = 3  # shorter values are ignored: masking "a" everywhere would destroy the log
MIN_LINE = 4   # a line of a multi-line value is masked on its own only from this length (stripped)


def secret_forms(value: str) -> set[str]:
    """Every shape in which `value` may show up in a log (the value itself included)."""
    forms = {value}
    if "\n" in value:
        lf = value.replace("\r\n", "\n")
        forms.update((lf, lf.replace("\n", "\r\n")))
        forms.update(s for s in (line.strip() for line in lf.split("\n")) if len(s) >= MIN_LINE)
    raw = value.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode("ascii")
        forms.update((encoded, encoded.rstrip("=")))
    forms.update((quote(value, safe=""), quote_plus(value)))
    return forms


def _trie_pattern(forms: Iterable[str]) -> str:
    """A regex matching any of `forms`, the longest one at a given position.

    A plain ``a|b|c`` alternation tries every branch at every position and slows
    down linearly with the number of forms (about 25x slower than this with 50
    secrets); as a trie, one character picks the only branch that can match, and
    a greedy ``(...)?`` where a form ends tries the longer forms first.
    """
    root: dict[str, dict] = {}
    for form in forms:
        node = root
        for char in form:
            node = node.setdefault(char, {})
        node[""] = {}  # a form ends here

    def build(node: dict[str, dict]) -> str:
        branches = []
        for char, child in node.items():
            if not char:
                continue
            chain = char
            while len(child) == 1 and "" not in child:  # a run without branches: one literal
                (char, child), = child.items()
                chain += char
            branches.append(re.escape(chain) + build(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(root)


class Masker:
    """The secrets of one job. Values shorter than 3 characters (or only whitespace) are ignored:
    masking "a" everywhere would destroy the log. Build once per job; masking is then cheap."""

    def __init__(self, values: Iterable[str], mask: str = "********") -> None:
        self.mask_text = mask
        forms: set[str] = set()
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_VALUE and value.strip():
                forms.update(secret_forms(value))
        self.forms: tuple[str, ...] = tuple(sorted(forms, key=lambda f: (-len(f), f)))  # longest first
        self.longest = len(self.forms[0]) if self.forms else 0
        self._sorted = sorted(forms)  # for "is this tail a prefix of a form?" by bisection
        self._rx = re.compile(_trie_pattern(self.forms)) if forms else None
        first_chars = "".join(re.escape(c) for c in sorted({f[0] for f in forms}))
        self._first = re.compile(f"[{first_chars}]" if forms else "(?!)")  # where a held-back tail may start

    def mask(self, text: str) -> str:
        """`text` with every form of every secret masked (commands shown, error messages)."""
        if self._rx is None:
            return text
        return self._scan(text, len(text), 0)[0]

    def stream(self) -> MaskingStream:
        """A new incremental masker for one output stream."""
        return MaskingStream(self)

    def _pending_start(self, buf: str) -> int:
        """Where the held-back tail starts: the first position whose rest of `buf` is a proper
        prefix of some form (so the next chunk may complete it), else ``len(buf)``."""
        n = len(buf)
        for m in self._first.finditer(buf, max(0, n - self.longest + 1)):
            tail = buf[m.start():]
            i = bisect_right(self._sorted, tail)  # the first form > tail starts with tail, if any does
            if i < len(self._sorted) and self._sorted[i].startswith(tail):
                return m.start()
        return n

    def _extend(self, buf: str, p: int, end: int) -> int:
        """Where a masked run ending at `end` really ends: forms starting inside it may reach further."""
        match = self._rx.match  # type: ignore[union-attr]
        while p < end:
            m = match(buf, p)
            if m is not None and m.end() > end:
                end = m.end()
            p += 1
        return end

    def _scan(self, buf: str, k: int, covered: int) -> tuple[str, int]:
        """Mask ``buf[:k]``, the part no later text can change.

        `covered`: the first chars of `buf` belong to a masked run already emitted.
        Returns the masked text and how far past `k` the last masked run reaches (its mask is
        emitted now; the caller passes that back as `covered` with the text from `k` on).
        """
        search = self._rx.search  # type: ignore[union-attr]
        out: list[str] = []
        pos = 0
        if covered:
            pos = self._extend(buf, 0, covered)
            if pos > k:
                return "", pos - k
        while True:
            m = search(buf, pos)
            if m is None or m.start() >= k:
                out.append(buf[pos:k])
                return "".join(out), 0
            end = self._extend(buf, m.start() + 1, m.end())
            out.append(buf[pos:m.start()])
            out.append(self.mask_text)
            if end > k:
                return "".join(out), end - k
            pos = end


class MaskingStream:
    """Masks one output stream chunk by chunk (stdout and stderr each have their own).

    `feed` each chunk and emit what it returns; `flush` once at the end of the command.
    At most ``longest form - 1`` chars are held back, and only while the tail could be the
    start of a form, so ordinary output is never delayed. After `flush` the stream is empty
    and may be fed again.
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._held = ""
        self._covered = 0  # chars of _held already inside an emitted mask

    @property
    def pending(self) -> int:
        """How many chars are held back, waiting for the next chunk."""
        return len(self._held)

    def feed(self, text: str) -> str:
        """The masked text that is safe to emit now."""
        masker = self.masker
        if masker._rx is None:
            return text
        buf = self._held + text if self._held else text
        k = masker._pending_start(buf)
        out, self._covered = masker._scan(buf, k, self._covered)
        self._held = buf[k:]
        return out

    def flush(self) -> str:
        """Everything held back, masked: the stream has ended."""
        buf, covered = self._held, self._covered
        self._held, self._covered = "", 0
        if not buf:
            return ""
        return self.masker._scan(buf, len(buf), covered)[0]
