"""Comments on jobs: what a comment may say, who may change it, and how many there may be. Pure, no I/O.

A comment's author is the signed-in user who wrote it; on a queen without users (open to its machine's
users on loopback, as `apiary up` is) the queen's owner, stored as author None. The rules, applied by
apiary.queen.comments:

* text: a string of 1 to MAX_TEXT characters once stripped, no control characters but tab and newline,
  no bidirectional overrides, no invisible characters (zero-width, tags, direction marks, separators; a
  zero-width joiner or non-joiner only between two non-ASCII characters) (`check_text`; carriage returns
  become newlines);
* at most MAX_PER_JOB comments on one job (409), and each author writes (posts or edits) at most
  RATE_LIMIT times per RATE_WINDOW seconds (429 with Retry-After; apiary.queen.throttle counts);
* who may (`may_change`): the author edits and deletes their own; an admin deletes anyone's (and edits
  only their own: words are not put in someone's mouth); on a queen without users, its owner does
  everything (there is nobody else).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from apiary.core.errors import BadRequest

MAX_TEXT = 10_000  # characters of one comment
MAX_PER_JOB = 1_000  # comments on one job
RATE_LIMIT = 10  # posts and edits by one author ...
RATE_WINDOW = 60.0  # ... within this many seconds
OWNER = "the queen's owner"  # how an author None (a queen without users) is shown

# C0 and C1 controls (a terminal acts on them: apiary comments prints the text) but tab and newline, and the
# bidirectional overrides and isolates that make text read otherwise than it is ("Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

# Characters that show nothing (or only break a line where none shows) and so make text read otherwise than it
# is, or hide in a word ("ad<U+200B>min"): zero-width space and joiners, word joiner and invisible operators, the
# deprecated format characters, the byte order mark, line and paragraph separators, direction marks, the
# Mongolian vowel separator and the tag characters (U+E0000-E007F, invisible letters).
_INVISIBLE = re.compile("[\u200b-\u200f\u2028\u2029\u2060-\u2064\u206a-\u206f\ufeff\u061c\u180e"
                        "\U000e0000-\U000e007f]")
# Zero-width joiner and non-joiner are part of writing between two non-ASCII characters: emoji sequences
# (👩‍💻), Persian and Indic words. Between ASCII characters, or at either end, they only hide.
_JOINERS = "\u200c\u200d"

Action = Literal["edit", "delete"]


def _invisible(text: str) -> re.Match[str] | None:
    """The first invisible character `text` may not hold (see _INVISIBLE, _JOINERS), or None."""
    for found in _INVISIBLE.finditer(text):
        i = found.start()
        if (found.group() in _JOINERS and 0 < i < len(text) - 1 and not text[i - 1].isascii()
                and not text[i + 1].isascii()):
            continue
        return found
    return None


def check_text(value: object, field: str = "text") -> str:
    """The comment's text, stripped, with CR LF and CR as LF; BadRequest naming `field` otherwise."""
    if value is None:
        raise BadRequest(f"{field}: required: the comment's text (markdown)", field=field)
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {type(value).__name__}", field=field)
    text = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise BadRequest(f"{field}: empty; write something", field=field)
    if len(text) > MAX_TEXT:
        raise BadRequest(f"{field}: {len(text):,} characters; at most {MAX_TEXT:,}", field=field)
    bad = _CONTROL.search(text)
    if bad is not None:
        raise BadRequest(f"{field}: holds the control character U+{ord(bad.group()):04X} at {bad.start()}; "
                         "only tabs and newlines, and no direction overrides", field=field)
    hidden = _invisible(text)
    if hidden is not None:
        char = hidden.group()
        name = unicodedata.name(char, "").lower() or "a tag character"
        raise BadRequest(f"{field}: holds the invisible character U+{ord(char):04X} ({name}) at {hidden.start()}; "
                         "characters that show nothing can make text read otherwise than it is: remove it",
                         field=field)
    return text


def author_of(user: str | None, users_exist: bool) -> str | None:
    """Who writes a new comment: the signed-in `user`; None for the owner of a queen without users."""
    return user if users_exist else None


def shown_author(author: str | None) -> str:
    return author if author else OWNER


def may_change(action: Action, author_id: str | None, user_id: str | None, role: str | None,
               users_exist: bool) -> bool:
    """Whether the person asking (the user of id `user_id` with `role`, None when not signed in) may `action` a
    comment written by the user of id `author_id` (None: the owner of a queen without users, or a user gone
    before ids). Ids, not names: a name deleted and taken again is someone else, and owns nothing of theirs."""
    if not users_exist:
        return True  # the queen's owner, its only user (the access rule already kept everyone else out)
    if user_id is None:
        return False
    if author_id is not None and author_id == user_id:
        return True
    return action == "delete" and role == "admin"


def may_comment(user: str | None, users_exist: bool) -> bool:
    """Whether the person asking may write a comment: anyone signed in (member or admin); on a queen without
    users its owner. (A visitor reading with anonymous_read may not.)"""
    return user is not None or not users_exist
