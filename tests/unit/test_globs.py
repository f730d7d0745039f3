"""The one glob matcher (apiary.core.globs) of artifacts, reports.junit, hashFiles() and when.changed:
its rules as table rows, and the pushed patterns that a backtracking expression took minutes over."""

from __future__ import annotations

import time

import pytest

from apiary.core.globs import matcher, matches


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    # '*' and '?' stay within a name
    ("out/*.txt", "out/a.txt", True),
    ("out/*.txt", "out/deep/a.txt", False),
    ("*", "a", True),
    ("*", "a/b", False),
    ("*.txt", ".hidden.txt", True),
    ("?.log", "a.log", True),
    ("?.log", "ab.log", False),
    ("?", "/", False),
    ("a*b*c", "abc", True),
    ("a*b*c", "aXbYc", True),
    ("a*b*c", "acb", False),
    ("a*a", "a", False),
    ("a*a", "aa", True),
    ("*ab*ab", "abab", True),
    ("*ab*ab", "aabab", True),
    ("*ab*ab", "abxab", True),
    ("*ab*ab", "abxa", False),
    ("*test*.py", "a_test_x.py", True),
    ("x*?*y", "xy", False),
    ("x*?*y", "xzy", True),
    # '**' as a whole name: any folders (none included); at the end, one name or more
    ("out/**/*.txt", "out/a.txt", True),
    ("out/**/*.txt", "out/x/y/a.txt", True),
    ("**/*.xml", "reports/unit.xml", True),
    ("**/*.xml", "unit.xml", True),
    ("**", "any/thing", True),
    ("**", "x", True),
    ("a/**", "a", False),
    ("a/**", "a/b", True),
    ("a/**", "a/b/c", True),
    ("a/**/**", "a/b", True),
    ("a/**/**", "a", False),
    ("a/**/c/**", "a/b/c/d", True),
    ("a/**/c/**", "a/c", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/bb", False),
    ("**/a/**/b/**", "x/a/y/b/z", True),
    ("**/a/**/b/**", "x/b/y/a/z", False),
    # '**' inside a name is a '*' (pathlib, .gitignore)
    ("**.py", "x.py", True),
    ("**.py", "a/x.py", False),
    ("src/a**", "src/abc", True),
    # classes
    ("[ab].txt", "b.txt", True),
    ("[!ab].txt", "b.txt", False),
    ("[!ab].txt", "c.txt", True),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "-x", False),
    ("[!a-c]x", "dx", True),
    ("[]]", "]", True),
    ("[!]]", "]", False),
    ("[!]]", "a", True),
    ("[-a]", "-", True),
    ("[a-]", "-", True),
    ("[z-a]", "a", False),
    ("[ab", "[ab", True),
    ("[ab", "a", False),
    ("a[.]b", "a.b", True),
    ("a[.]b", "axb", False),
    # everything else is itself, whole and case-sensitive
    ("dist/*.whl", "dist/pkg-1.0-py3-none-any.whl", True),
    ("a.txt", "a_txt", False),
    ("a.txt", "A.txt", False),
    ("a.txt", "a.txt.bak", False),
    ("a.txt", "x/a.txt", False),
    ("(a|b)+", "(a|b)+", True),
    ("(a|b)+", "a", False),
    ("a\\b", "a\\b", True),
    ("n\nx", "n\nx", True),
    ("*", "n\nx", True),
    ("?", "\n", True),
])
def test_patterns_match_as_globs_do(pattern: str, path: str, hit: bool) -> None:
    assert matches(pattern, path) is hit


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    # a backtracking expression: 2**12 ways to lay the '**' over the folders, again at every try
    ("**/" * 12 + "zz", "a/" * 25 + "b", False),
    ("**/" * 12 + "zz", "a/" * 25 + "zz", True),
    ("**/" * 80 + "zz", "a/" * 2000 + "zz", True),
    ("**/" * 80 + "a/" * 80 + "zz", "a/" * 2000 + "b", False),
    ("a/**/" * 40 + "zz", "a/" * 2000 + "b", False),
    ("**/" * 12 + "b/zz", "a/" * 25 + "zz", False),  # the last name matches: every folder is tried
    ("**/a*/" * 12 + "zz", "a/" * 2000 + "zz", True),
    # one name: (name length)**(stars) ways to lay the '*' over it
    ("*a*a*a*a*a*a*a*b", "a" * 2000, False),
    ("*a*a*a*a*a*a*a*b", "a" * 2000 + "b", True),
    ("*a" * 100 + "b", "a" * 4000, False),
    ("*?" * 100 + "b", "a" * 4000, False),
    ("*[ab]" * 100 + "c", "ab" * 2000, False),
    ("*a*a*a*a*a*a*a*b/**/" * 10 + "x", ("a" * 200 + "/") * 30 + "y", False),
])
def test_hostile_patterns_are_answered_at_once(pattern: str, path: str, hit: bool) -> None:
    started = time.perf_counter()
    assert matches(pattern, path) is hit
    print(f"{pattern[:30]!r}... over {len(path):,} characters: {(time.perf_counter() - started) * 1000:.1f} ms")


def test_a_compiled_pattern_is_reused() -> None:
    assert matcher("out/**/*.txt") is matcher("out/**/*.txt")
