"""Glob patterns over workspace- or repository-relative POSIX paths, matched in polynomial time.

The patterns are the pusher's (a fork's pull request too): artifacts, ``reports.junit``,
``hashFiles()`` and ``when.changed``. A glob compiled to one backtracking regular expression
(``(?:.*/)?`` per ``**/``, ``[^/]*`` per ``*``) takes time exponential in the number of ``**`` and
``*``: ``'**/' * 12 + 'zz'`` over a 25-folder path held the interpreter lock for seconds to minutes,
so the drone's heartbeats stopped and the queen took it for lost. Here a pattern is matched name by
name: ``**`` names by dynamic programming over the path's names (pattern names x path names), and
each other name by splitting it at its ``*`` into fixed-length pieces found leftmost in turn (name
length x pattern length at worst, in the `re` engine with no quantifier in it).

Rules (pathlib.Path.glob's, and .gitignore's for ``**`` inside a name):

- ``**`` as a whole name: any number of folders, none included; at the end of the pattern, one
  name or more (``a/**`` is everything under a; ``**`` alone is every path);
- ``*``: any characters within one name (``**`` inside a name, like ``**.py``, is a ``*``);
- ``?``: one character;
- ``[abc]``, ``[a-z]``, ``[!a-z]`` (negated): one character of a class; a ``]`` right after
  ``[`` or ``[!`` is in the class; a ``[`` with no closing ``]`` is itself;
- anything else is itself (case-sensitive). Paths are matched whole.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[str], bool]  # a path's text -> whether the pattern matches it

_ANY_NAMES = None  # a ``**`` name in a compiled pattern


@dataclass(frozen=True)
class _Piece:
    """A run of a name's pattern with no ``*``: `size` characters, each a literal, ``?`` or a class.
    `text` is set when all are literals (found with str methods), else `regex` (no quantifier)."""

    size: int
    text: str | None
    regex: re.Pattern[str] | None

    def at(self, name: str, pos: int) -> bool:
        """Whether the piece matches `name` at `pos`."""
        if self.text is not None:
            return name.startswith(self.text, pos)
        return self.regex is not None and self.regex.match(name, pos) is not None

    def find(self, name: str, pos: int, end: int) -> int:
        """Where the piece first matches wholly within name[pos:end], or -1."""
        if self.text is not None:
            return name.find(self.text, pos, end)
        found = self.regex.search(name, pos, end) if self.regex is not None else None
        return -1 if found is None else found.start()


@dataclass(frozen=True)
class _Name:
    """One name's pattern: the pieces between its ``*`` (one piece and no star: a fixed length)."""

    pieces: tuple[_Piece, ...]
    star: bool

    def __call__(self, name: str) -> bool:
        """Whether `name` (no '/') matches. Time: len(name) x pattern length at worst."""
        pieces = self.pieces
        if not self.star:
            return len(name) == pieces[0].size and pieces[0].at(name, 0)
        first, last = pieces[0], pieces[-1]
        end = len(name) - last.size  # the last piece is pinned to the end
        if end < first.size or not first.at(name, 0) or not last.at(name, end):
            return False
        pos = first.size
        for piece in pieces[1:-1]:  # leftmost placement of each leaves the most room for the rest
            where = piece.find(name, pos, end)
            if where < 0:
                return False
            pos = where + piece.size
        return True


def _class(pattern: str, i: int) -> tuple[str, int] | None:
    """The regex class for the ``[`` at `i` and the index after its ``]``, or None (a plain '[')."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] == "!"
    j += negate
    start = j
    if j < len(pattern) and pattern[j] == "]":
        j += 1  # a ']' first is a member
    end = pattern.find("]", j)
    if end < 0:
        return None
    body, items, k = pattern[start:end], [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low <= high:  # 'z-a' is empty, as fnmatch has it
                items.append(f"{re.escape(low)}-{re.escape(high)}")
            k += 3
        else:
            items.append(re.escape(body[k]))
            k += 1
    if not items:
        return ("(?!)" if not negate else "."), end + 1  # no member: nothing (negated: anything)
    return ("[^" if negate else "[") + "".join(items) + "]", end + 1


def _piece(tokens: list[str], literal: bool) -> _Piece:
    if literal:
        return _Piece(len(tokens), "".join(tokens), None)
    return _Piece(len(tokens), None, re.compile("".join(tokens), re.DOTALL))


def _name(pattern: str) -> _Name:
    """One name's pattern (no '/') compiled."""
    pieces, tokens, literal, star, i = [], [], [], False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            while i < len(pattern) and pattern[i] == "*":
                i += 1  # '**' within a name is one '*'
            pieces.append(_piece(tokens if not all(literal) else literal, all(literal)))
            tokens, literal, star = [], [], True
            continue
        cls = _class(pattern, i) if c == "[" else None
        if c == "?":
            tokens.append(".")
            literal.append(False)
        elif cls is not None:
            tokens.append(cls[0])
            literal.append(False)
            i = cls[1]
            continue
        else:
            tokens.append(re.escape(c))
            literal.append(c)
        i += 1
    pieces.append(_piece(tokens if not all(literal) else literal, all(literal)))
    return _Name(tuple(pieces), star)


@functools.lru_cache(maxsize=512)
def matcher(pattern: str) -> Matcher:
    """`pattern` compiled: a function of a path ("a/b/c.txt", names joined by '/') returning whether
    it matches (rules in the module's docstring). Time per path: at most (pattern's names x path's
    names) name matches, each at most name length x pattern length."""
    names: list[_Name | None] = []
    for part in pattern.split("/"):
        if part == "**":
            if names and names[-1] is _ANY_NAMES:
                continue  # '**/**' is '**' (and at the end, still one name or more)
            names.append(_ANY_NAMES)
        else:
            names.append(_name(part))
    compiled = tuple(names)
    if _ANY_NAMES not in compiled:
        def fixed(path: str) -> bool:
            parts = path.split("/")
            return len(parts) == len(compiled) and all(m(p) for m, p in zip(compiled, parts))  # type: ignore[misc]
        return fixed

    last = compiled[-1]

    def match(path: str) -> bool:
        parts = path.split("/")
        if last is not None and not last(parts[-1]):
            return False  # most paths, at the cost of one name
        return _walk(compiled, parts)

    return match


def _walk(names: tuple[_Name | None, ...], parts: list[str]) -> bool:
    """Whether the pattern's `names` match the path's `parts`, by dynamic programming from the end:
    ok[j] says the pattern's names from the current one on match the path's names from j on."""
    count = len(parts)
    ok = [False] * count + [True]
    for i in range(len(names) - 1, -1, -1):
        m = names[i]
        new = [False] * (count + 1)
        if m is None and i == len(names) - 1:
            new = [j < count for j in range(count + 1)]  # a trailing '**': one name or more
        elif m is None:
            new[count] = ok[count]
            for j in range(count - 1, -1, -1):
                new[j] = ok[j] or new[j + 1]
        else:
            for j in range(count):
                new[j] = ok[j + 1] and m(parts[j])
        ok = new
        if not any(ok):
            return False
    return ok[0]


def matches(pattern: str, path: str) -> bool:
    """Whether `path` matches `pattern` (see matcher)."""
    return matcher(pattern)(path)
