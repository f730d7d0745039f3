"""Comments' rules: what a comment may say and who may change it (apiary.queen.comment_rules)."""

from __future__ import annotations

import pytest

from apiary.core.errors import BadRequest
from apiary.queen.comment_rules import MAX_TEXT, OWNER, author_of, check_text, may_change, may_comment, shown_author


@pytest.mark.parametrize(("given", "kept"), [
    ("  looks flaky\n", "looks flaky"),
    ("a\r\nb\rc", "a\nb\nc"),
    ("tab\there", "tab\there"),
    ("naïve café, 日本語, emoji 🐝, right-to-left עברית", "naïve café, 日本語, emoji 🐝, right-to-left עברית"),
    ("x" * MAX_TEXT, "x" * MAX_TEXT),
    ("family 👩\u200d👩\u200d👧, coder 👩\u200d💻", "family 👩\u200d👩\u200d👧, coder 👩\u200d💻"),  # emoji sequences
    ("می\u200cخواهم", "می\u200cخواهم"),  # Persian: a non-joiner inside a word is spelling
])
def test_text_kept(given: str, kept: str) -> None:
    assert check_text(given) == kept


@pytest.mark.parametrize(("given", "says"), [
    (None, "text: required"),
    (5, "text: must be a string, got int"),
    (["a"], "text: must be a string, got list"),
    ("   \n ", "text: empty"),
    ("x" * (MAX_TEXT + 1), "text: 10,001 characters; at most 10,000"),
    ("a\x00b", "text: holds the control character U+0000 at 1"),
    ("a\x1b[31mred", "text: holds the control character U+001B at 1"),
    ("a\x9b31mred", "text: holds the control character U+009B at 1"),  # C1 CSI
    ("abc\u202edcba", "text: holds the control character U+202E at 3"),  # right-to-left override
    ("\u2066x", "text: holds the control character U+2066 at 0"),
    ("ad\u200bmin", "text: holds the invisible character U+200B (zero width space) at 2"),
    ("ad\u200cmin", "text: holds the invisible character U+200C (zero width non-joiner) at 2"),  # in ASCII
    ("ad\u200dmin", "text: holds the invisible character U+200D (zero width joiner) at 2"),
    ("🐝\u200d", "text: holds the invisible character U+200D (zero width joiner) at 1"),  # at the end
    ("a\u2060b", "text: holds the invisible character U+2060 (word joiner) at 1"),
    ("\ufeffhi", "text: holds the invisible character U+FEFF (zero width no-break space) at 0"),
    ("one\u2028two", "text: holds the invisible character U+2028 (line separator) at 3"),
    ("one\u2029two", "text: holds the invisible character U+2029 (paragraph separator) at 3"),
    ("abc\u200e", "text: holds the invisible character U+200E (left-to-right mark) at 3"),
    ("a\u200fb", "text: holds the invisible character U+200F (right-to-left mark) at 1"),
    ("a\u061cb", "text: holds the invisible character U+061C (arabic letter mark) at 1"),
    ("ok\U000e0041\U000e0042", "text: holds the invisible character U+E0041 (tag latin capital letter a) at 2"),
    ("ok\U000e007f", "text: holds the invisible character U+E007F (cancel tag) at 2"),
])
def test_text_refused(given: object, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_text(given)
    assert str(refused.value).startswith(says) and refused.value.field == "text"


# author and user are user ids (never reused): a new "bob" made after the old one was deleted has another id.
@pytest.mark.parametrize(("action", "author", "user", "role", "users_exist", "allowed"), [
    ("edit", "bob", "bob", "member", True, True),
    ("edit", "id-of-the-old-bob", "id-of-the-new-bob", "member", True, False),
    ("delete", "id-of-the-old-bob", "id-of-the-new-bob", "member", True, False),
    ("delete", "bob", "bob", "member", True, True),
    ("edit", "bob", "eve", "member", True, False),
    ("delete", "bob", "eve", "member", True, False),
    ("edit", "bob", "ada", "admin", True, False),  # an admin deletes anyone's, edits only their own
    ("delete", "bob", "ada", "admin", True, True),
    ("edit", "ada", "ada", "admin", True, True),
    ("edit", None, "ada", "admin", True, False),  # the owner's, from before there were users
    ("delete", None, "ada", "admin", True, True),
    ("delete", None, "bob", "member", True, False),
    ("edit", "bob", None, None, True, False),  # a visitor reading anonymously
    ("delete", "bob", None, None, True, False),
    ("edit", None, None, None, False, True),  # a queen without users: its owner
    ("delete", None, None, None, False, True),
])
def test_who_may_change_a_comment(action: str, author: str | None, user: str | None, role: str | None,
                                  users_exist: bool, allowed: bool) -> None:
    assert may_change(action, author, user, role, users_exist) is allowed  # type: ignore[arg-type]


def test_who_writes() -> None:
    assert author_of("bob", True) == "bob" and author_of(None, False) is None
    assert shown_author(None) == OWNER and shown_author("bob") == "bob"
    assert may_comment("bob", True) and may_comment(None, False) and not may_comment(None, True)
