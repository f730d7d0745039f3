"""Masks repository secrets in everything that leaves the drone: commands shown, errors, output.

A secret leaks in more shapes than its plain value, so a `Masker` also masks its
*forms* (`secret_forms`), wherever they sit in longer output:

- base64, standard and URL-safe, at each of the three byte alignments (the
  secret after a prefix of any length, as in HTTP Basic ``user:secret``), with
  and without ``=`` padding: the characters that only the secret's bytes decide;
- hex, lower and upper case;
- percent-encoding with any set of characters left as they are (every byte
  encoded, too), ``+`` or ``%20`` for a space, either case of hex digits (one
  pattern per secret, `percent_units`, rather than a form per choice);
- JSON string escaping (``\\"``, ``\\\\``, ``\\uXXXX``, ``\\/``),
  every character as ``\\uXXXX`` too, and JSON inside JSON;
- for a multi-line value, each line on its own and the value with ``\\r\\n``.

Forms are matched in what a terminal shows (`project`): escape sequences, controls it does
not show and characters written over after a backspace between a secret's characters are
skipped; the mask replaces the characters and keeps the sequences.

What cannot be masked: a secret printed reversed, hashed, encrypted, split
over several lines or with visible characters between its characters; put together on
screen with cursor movements or a ``\r`` rewriting the start of a line; compressed;
encoded in a way not listed. Where occurrences overlap (one secret inside
another, or two sharing chars), the whole overlapping run becomes one mask, so
no part of a secret is ever left showing.

Output arrives in chunks and a secret may straddle two of them: a
`MaskingStream` (one per output stream) holds back only a tail that could still
be the start of a form, and emits it once the next chunk (or `flush`) settles it.
Whatever the chunking, a stream's output equals `Masker.mask` of the whole text.
Pure code: no I/O, no clocks.
"""

from __future__ import annotations

import base64
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from apiary.core.secretvalue import MIN_VALUE

# What a terminal does not show between a secret's characters: escape sequences (CSI, OSC/DCS/PM/APC to their
# end, other ESC sequences, their 8-bit C1 forms), control characters other than \b \t \n \v \f \r, and the
# zero-width characters a terminal draws as nothing (zero-width space and joiners, direction marks, word joiner,
# BOM).
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
    r"|[\x00-\x07\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u2064\ufeff]")
_UNFINISHED = re.compile(
    r"(?:(?:\x1b\[|\x9b)[0-?]*[ -/]*|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*\x1b?|\x1b[ -/]*)\Z")
_SPECIAL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2060-\u2064\ufeff]")  # where it differs from what shows
MAX_UNFINISHED = 512  # an escape sequence still open at a chunk's end is held back up to this many chars


def project(raw: str, final: bool = True) -> tuple[str, list[int] | None, int]:
    """What a terminal shows of `raw`, for matching secrets: ``(visible, where, hold)``.

    `visible` is `raw` without escape sequences and controls a terminal does not show, and with the characters a
    backspace steps back over replaced by what is written over them (``s \\b3`` shows ``s3``, ``x\\bx`` shows
    ``x``); `where[i]` is the index in `raw` of ``visible[i]`` (None: nothing differs, `raw` is shown as it is).
    Unless `final` (more text may follow), an escape sequence still open at the end, and characters that trailing
    backspaces step back over (the next text writes over them), are left out: `hold` is where they start
    (``len(raw)`` when nothing is left out). What this cannot follow: cursor movements, and a ``\\r`` or
    backspaces rewriting only the start of what a line shows (the two parts are matched as written, one after
    the other).
    """
    if not _SPECIAL.search(raw):
        return raw, None, len(raw)
    chars: list[str] = []
    where: list[int] = []
    line = 0  # where the current line starts in `chars`: a backspace does not go back past it
    back = 0  # backspaces waiting for text to write over the characters they stepped back over
    hold = n = len(raw)
    i = 0

    def text(a: int, b: int) -> None:
        nonlocal back, line
        if a == b:
            return
        if back:
            del chars[len(chars) - back:], where[len(where) - back:]
            back = 0
        piece = raw[a:b]
        chars.extend(piece)
        where.extend(range(a, b))
        last = max(piece.rfind(c) for c in "\n\r\v\f")
        if last >= 0:
            line = len(chars) - len(piece) + last + 1

    while i < n:
        m = _SPECIAL.search(raw, i)
        if m is None:
            text(i, n)
            break
        j = m.start()
        text(i, j)
        if raw[j] == "\b":
            back = min(back + 1, len(chars) - line)
            i = j + 1
            continue
        if not final and n - j <= MAX_UNFINISHED and _UNFINISHED.match(raw, j):
            hold = j
            break
        seq = _SEQUENCE.match(raw, j)
        i = seq.end() if seq is not None else j + 1
    if back and not final:
        hold = min(hold, where[len(where) - back])
        del chars[len(chars) - back:], where[len(where) - back:]
    return "".join(chars), where, hold


_ESCAPES = re.compile(_SEQUENCE.pattern.rsplit("|", 1)[0])  # the sequences alone, not the single controls


def _sequences(raw: str) -> str:
    """The escape sequences in `raw`, in order: what stays of a masked run besides its mask (colours go on)."""
    return "".join(_ESCAPES.findall(raw)) if "\x1b" in raw or _SPECIAL.search(raw) else ""


MIN_LINE = 4   # a line of a multi-line value is masked on its own only from this length (stripped)
MIN_CORE = 4   # the shortest run of base64 a secret decides alone that is masked (shorter ones say little)
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def secret_forms(value: str) -> set[str]:
    """Every shape in which `value` may show up in a log (the value itself included)."""
    forms = {value}
    if "\n" in value:
        lf = value.replace("\r\n", "\n")
        forms.update((lf, lf.replace("\n", "\r\n")))
        forms.update(s for s in (line.strip() for line in lf.split("\n")) if len(s) >= MIN_LINE)
    raw = value.encode()
    forms.update(_base64_forms(raw))
    forms.update((raw.hex(), raw.hex().upper()))
    # Every byte percent-encoded, unreserved ones too (some encoders do); the mixed spellings are
    # `percent_units`' pattern.
    every = "".join(f"%{b:02X}" for b in raw)
    forms.update((every, every.lower()))
    forms.update(_json_forms(value))
    return {f for f in forms if f}


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text only `raw` decides, wherever `raw` sits in the encoded bytes.

    After a prefix of a bytes (a = 0, 1, 2 modulo 3), the characters from
    ceil(8a/6) up to floor(8(a+n)/6) carry bits of `raw` alone; if `raw` ends
    the encoded bytes, the rest of the encoding (the last character and the
    padding) is decided too.
    """
    forms = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for a in range(3):
            encoded = encode(b"\0" * a + raw).decode("ascii")
            start, end = -(-8 * a // 6), 8 * (a + len(raw)) // 6
            core = encoded[start:end]
            if len(core) >= MIN_CORE:
                forms.add(core)
            forms.update((encoded[start:], encoded[start:].rstrip("=")))
    return forms


def percent_units(value: str) -> list[tuple[str, ...]] | None:
    """How each character of `value` may look once percent-encoded by any encoder: itself, ``%XX`` for
    each of its UTF-8 bytes (hex digits in either case: compared without case), ``+`` for a space.
    None when no character would be encoded (the plain form covers it)."""
    if all(c in _UNRESERVED for c in value):
        return None
    units = []
    for c in value:
        alternatives = [c]
        if c not in _UNRESERVED:
            alternatives.append("".join(f"%{b:02X}" for b in c.encode()))
        if c == " ":
            alternatives.append("+")
        units.append(tuple(alternatives))
    return units


def _anchor(units: list[tuple[str, ...]]) -> str | None:
    """The longest run of characters every spelling of `units` keeps as they are (at least 3), or None."""
    best = run = ""
    for alternatives in units:
        run = run + alternatives[0] if len(alternatives) == 1 else ""
        best = max(best, run, key=len)
    return best if len(best) >= 3 else None


def _percent_pattern(units: list[tuple[str, ...]]) -> str:
    """A regex for every spelling `percent_units` allows."""
    def one(alternative: str) -> str:
        if not alternative.startswith("%"):
            return re.escape(alternative)
        return "".join("%" + "".join(f"[{h}{h.lower()}]" if h.isalpha() else h for h in alternative[i + 1:i + 3])
                       for i in range(0, len(alternative), 3))
    return "".join("(?:" + "|".join(one(a) for a in alternatives) + ")" for alternatives in units)


def _percent_prefix(tail: str, units: list[tuple[str, ...]]) -> bool:
    """Whether `tail` is the start (not the whole) of a spelling of `units`: the next chunk may finish it."""
    seen: set[tuple[int, int]] = set()

    def can(i: int, j: int) -> bool:  # units[i:] can spell a continuation of tail[j:]
        if j == len(tail):
            return i < len(units)
        if i == len(units) or (i, j) in seen:
            return False
        seen.add((i, j))
        for alternative in units[i]:
            piece = tail[j:j + len(alternative)]
            same = piece.upper() == alternative[:len(piece)].upper() if alternative.startswith("%") else \
                piece == alternative[:len(piece)]
            if same and (len(piece) < len(alternative) or can(i + 1, j + len(piece))):
                return True
        return False

    return can(0, 0)


def _json_forms(value: str) -> set[str]:
    """`value` inside a JSON string: as Python, JavaScript and others escape it, every character as
    ``\\uXXXX`` too, and JSON inside JSON."""
    forms = set()
    for ascii_only in (True, False):
        text = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.update((text, text.replace("/", "\\/"), json.dumps(text, ensure_ascii=ascii_only)[1:-1]))
        forms.add(re.sub(r"\\u[0-9a-f]{4}", lambda m: m.group(0).upper().replace("\\U", "\\u"), text))
    units = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in value)
    forms.update((units, re.sub(r"[0-9a-f]", lambda m: m.group(0).upper(), units.replace("\\u", "\\U"))
                  .replace("\\U", "\\u")))
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
        self._percent: list[list[tuple[str, ...]]] = []
        for value in values:
            if isinstance(value, str) and len(value) >= MIN_VALUE and value.strip():
                forms.update(secret_forms(value))
                units = percent_units(value)
                if units is not None and units not in self._percent:
                    self._percent.append(units)
        # Matched in what a terminal shows (`project`): a value holding what shows nothing is matched as it shows.
        forms.update(shown for shown in (project(f)[0] for f in list(forms) if _SPECIAL.search(f))
                     if len(shown) >= MIN_VALUE)
        self.forms: tuple[str, ...] = tuple(sorted(forms, key=lambda f: (-len(f), f)))  # longest first
        spelt = [sum(max(len(a) for a in alternatives) for alternatives in units) for units in self._percent]
        self.longest = max([len(self.forms[0]) if self.forms else 0, *spelt])
        self._sorted = sorted(forms)  # for "is this tail a prefix of a form?" by bisection
        patterns = ([_trie_pattern(self.forms)] if forms else []) + [_percent_pattern(u) for u in self._percent]
        self._rx = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        # Text without "%" or "+" cannot hold a percent-encoding other than the plain value, nor can text
        # without a secret's longest run of characters no encoder changes: the literal forms alone, which
        # the trie finds fast, are enough there.
        self._rx_plain = re.compile(patterns[0]) if forms and self._percent else self._rx
        self._anchors = [_anchor(units) for units in self._percent]
        starts = {f[0] for f in forms} | {a[0] for units in self._percent for a in units[0]}
        first_chars = "".join(re.escape(c) for c in sorted(starts))
        self._first = re.compile(f"[{first_chars}]" if starts else "(?!)")  # where a held-back tail may start

    def mask(self, text: str) -> str:
        """`text` with every form of every secret masked (commands shown, error messages)."""
        if self._rx is None:
            return text
        visible, where, _ = project(text)
        ranges, skip, _ = self._scan(visible, len(visible), 0)
        return self._build(text, where, 0, len(text), skip, ranges, len(visible))

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
            if any(_percent_prefix(tail, units) for units in self._percent):
                return m.start()
        return n

    def _rx_for(self, buf: str) -> re.Pattern[str]:
        if self._rx_plain is not self._rx and ("%" in buf or "+" in buf) and any(
                anchor is None or anchor in buf for anchor in self._anchors):
            return self._rx  # type: ignore[return-value]
        return self._rx_plain  # type: ignore[return-value]

    def _extend(self, buf: str, p: int, end: int) -> int:
        """Where a masked run ending at `end` really ends: forms starting inside it may reach further."""
        match = self._rx_for(buf).match
        while p < end:
            m = match(buf, p)
            if m is not None and m.end() > end:
                end = m.end()
            p += 1
        return end

    def _scan(self, buf: str, k: int, covered: int) -> tuple[list[tuple[int, int]], int, int]:
        """The masked runs of ``buf[:k]``, the part no later text can change: ``(runs, skip, over)``.

        `covered`: the first chars of `buf` belong to a masked run already emitted; `skip`: where that run really
        ends (its chars are masked, with no mask of their own). `runs`: ``(start, end)`` of each run starting
        before `k`, one mask each, `end` at most `k`. `over`: how far past `k` the last run (or the covered one)
        reaches (its mask is emitted now; the caller passes that back as `covered` with the text from `k` on).
        """
        search = self._rx_for(buf).search
        runs: list[tuple[int, int]] = []
        pos = 0
        if covered:
            pos = self._extend(buf, 0, covered)
            if pos > k:
                return runs, k, pos - k
        skip = pos
        while True:
            m = search(buf, pos)
            if m is None or m.start() >= k:
                return runs, skip, 0
            end = self._extend(buf, m.start() + 1, m.end())
            runs.append((m.start(), min(end, k)))
            if end > k:
                return runs, skip, end - k
            pos = end

    def _build(self, raw: str, where: list[int] | None, lo: int, hi: int, skip: int, runs: list[tuple[int, int]],
               cut: int) -> str:
        """``raw[lo:hi]`` with the masked `runs` (and the covered start up to `skip`) of its visible text (`project`)
        replaced: a run by the mask and the escape sequences among its characters (colours set or reset there
        still apply), the covered start by its escape sequences alone. `cut`: the visible index at `hi` (a run
        ending there takes everything up to `hi`)."""
        if where is None:
            pos = max(lo, skip)
            out = []
            for start, end in runs:
                out.append(raw[pos:start])
                out.append(self.mask_text)
                pos = end
            out.append(raw[pos:hi])
            return "".join(out)

        def raw_end(v: int) -> int:  # just past the visible char before index v
            return hi if v >= cut else min(hi, where[v - 1] + 1) if v else lo

        out = []
        pos = lo
        if skip:
            end = max(lo, raw_end(skip))
            out.append(_sequences(raw[pos:end]))
            pos = end
        for start, end in runs:
            first = max(pos, where[start])
            out.extend((raw[pos:first], self.mask_text))
            pos = max(first, raw_end(end))
            out.append(_sequences(raw[first:pos]))
        out.append(raw[pos:hi])
        return "".join(out)


class MaskingStream:
    """Masks one output stream chunk by chunk (stdout and stderr each have their own).

    `feed` each chunk and emit what it returns; `flush` once at the end of the command.
    At most ``longest form - 1`` chars are held back, and only while the tail could be the
    start of a form, so ordinary output is never delayed. After `flush` the stream is empty
    and may be fed again. `release` gives up what is held when the other stream speaks (its
    text must not overtake what this one wrote first).
    """

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self._held = ""
        # The first `_done` chars of _held are emitted already: inside a mask when `_masked`, else as
        # they were (released short); they stay as context, so a form they begin is still found.
        self._done = 0
        self._masked = False
        # The end of the line emitted before _held, as it was written: a backspace in the next chunk may step
        # back into it (``s3cr3X`` out, then ``\b3``).
        self._context = ""
        self._overwrites = False  # a backspace was seen: the stream may rewrite what it wrote
        self._context_size = 2 * masker.longest + 64

    @property
    def pending(self) -> int:
        """How many chars are held back, waiting for the next chunk."""
        return len(self._held) - self._done

    def feed(self, text: str) -> str:
        """The masked text that is safe to emit now."""
        masker = self.masker
        if masker._rx is None:
            return text
        buf = self._held + text if self._held else text
        if "\b" in text and self._context:
            # A backspace may step back into what went out already: match it with what it writes over.
            buf = self._context + buf
            self._masked = self._masked and self._done > 0
            self._done += len(self._context)
            self._context = ""  # in buf now
        view = project(buf, final=False)
        visible, where, hold = view
        start = masker._pending_start(visible)
        if "\b" in text:
            self._overwrites = True
        if self._overwrites and visible and visible[-1] not in "\r\n":
            # A stream that steps back may write over its last char next (``s3c `` then ``\b r``): the start
            # of a form followed by one more char is held too.
            before = masker._pending_start(visible[:-1])
            start = min(start, before) if before < len(visible) - 1 else start
        if where is not None:
            start = where[start] if start < len(visible) else len(buf)
        return self._emit(buf, min(start, hold), view)

    def release(self, paced: bool = False) -> str:
        """What is held back, to emit now although the stream goes on (the other stream has spoken, or
        `paced`: a hold timer ran out in an interactive shell).

        The held tail is the start of a form. A tail of MIN_CORE chars or more may be most of a secret:
        it is emitted as one mask; a shorter one is emitted as it is. Either stays as context: if the
        next chunk completes a form it begins, the rest of that form is masked too (a form cut by the
        other stream shows at most 3 chars). `paced` counts what of the tail went out already too (a
        secret printed a character at a time is released a character at a time) and masks from
        MIN_VALUE chars on: whatever the pacing, at most the first 2 chars of a form ever show.
        Chars count as a terminal shows them (`project`): escape sequences and overwritten chars do not.
        An escape sequence still open, or chars a trailing backspace steps back over, stay held.
        """
        buf = self._held
        if self.masker._rx is None or len(buf) == self._done:
            return ""
        view = project(buf, final=False)
        visible, where, hold = view
        if hold <= self._done:
            return ""
        shown = len(visible)
        done = self._done if where is None else bisect_left(where, self._done)
        if shown - done >= MIN_CORE or (paced and shown >= MIN_VALUE):
            out = "" if self._done and self._masked else self.masker.mask_text
            out += _sequences(buf[self._done:hold])
            self._done, self._masked = hold, True
            return out
        context = self._context
        out = self._emit(buf, hold, view)
        self._held, self._done, self._masked = buf, hold, out.endswith(self.masker.mask_text)
        self._context = context  # still what went before _held
        return out

    def flush(self) -> str:
        """Everything held back, masked: the stream has ended."""
        out = self._emit(self._held, len(self._held), project(self._held)) if self._held else ""
        self._held, self._done, self._masked, self._context = "", 0, False, ""
        return out

    def _emit(self, buf: str, k: int, view: tuple[str, list[int] | None, int]) -> str:
        """The masked text of ``buf[:k]`` not emitted yet; ``buf[k:]`` is held from now on. `view`: `project`
        of `buf`; the masker matches what it shows, and positions in it (visible chars) are turned back into
        positions in `buf`."""
        masker = self.masker
        visible, where, _ = view
        if where is None:
            def at(i: int) -> int:  # visible chars before buf[i]
                return i

            def after(v: int) -> int:  # where in buf the visible chars before index v end
                return v
        else:
            def at(i: int) -> int:
                return bisect_left(where, i)

            def after(v: int) -> int:
                return where[v - 1] + 1 if v else 0
        done = self._done
        vdone, vk = at(done), at(k)
        out = ""
        reach = masker._extend(visible, 0, vdone) if vdone else 0  # a form begun in what was emitted
        if reach > vdone and not self._masked:
            out = masker.mask_text  # its start was shown as it was: its rest is masked
        masked = self._masked if reach == vdone else True
        reach_raw = max(done, after(reach)) if reach > vdone else done
        if k <= reach_raw:
            out += _sequences(buf[done:reach_raw])
            self._keep(buf, k, reach_raw - k, masked)
            return out
        runs, skip, over = masker._scan(visible, vk, reach)
        out += masker._build(buf, where, done, k, skip, runs, vk)
        end = max(k, after(vk + over)) if over else k
        out += _sequences(buf[k:end])
        self._keep(buf, k, end - k, over > 0)
        return out

    def _keep(self, buf: str, k: int, done: int, masked: bool) -> None:
        """Hold ``buf[k:]`` (its first `done` chars emitted already); what went out before stays as context."""
        self._held, self._done, self._masked = buf[k:], done, masked
        if k:
            context = (self._context + buf[:k])[-self._context_size:]
            self._context = context[max(context.rfind("\n"), context.rfind("\r")) + 1:]
