"""Markdown people write (comments on jobs) as HTML a page may show: no HTML of theirs ever reaches it.

`render(text)` is pure. It uses markdown-it-py (CommonMark, plus tables and ~~strikethrough~~) with:

* ``html: False``: raw HTML in the text (``<script>``, ``<img onerror=…>``, ``<a href=…>``) is shown as
  text, escaped, never passed through;
* links only to ``http:``, ``https:`` and ``mailto:`` (`link_allowed`): ``javascript:``, ``data:``,
  ``vbscript:``, relative and scheme-less links (``//host``, spelled with entities or tabs or not) stay
  text; each link gets ``rel="nofollow noopener noreferrer"``;
* no images: ``![alt](url)`` is a link to the address, not an ``<img>`` (a picture from elsewhere would
  tell its server who reads the page, and when; the pages' Content-Security-Policy refuses them too);
* no linkify (bare addresses stay text) and markdown-it's nesting bound (20 levels).

Input is bounded by the caller (apiary.queen.comment_rules.MAX_TEXT characters); markdown-it's parse is
about linear in it (the hostile inputs in tests/unit/test_safe_markdown.py render in milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
RENDERER_VERSION = 1  # stored with each rendering: a comment rendered by an older version is rendered again
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):", re.IGNORECASE)


def link_allowed(url: str) -> bool:
    """Whether a (normalised) link may be a link: an absolute http, https or mailto address, nothing else."""
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() not in ALLOWED_SCHEMES:
        return False
    rest = url[match.end():]
    # http(s) needs a host ("http:foo" is relative to the page in a browser); mailto needs an address
    return rest.startswith("//") and len(rest) > 2 if match.group(1).lower() != "mailto" else bool(rest)


def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    md.validateLink = link_allowed  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _parser()


def render(text: str) -> str:
    """`text` (markdown) as safe HTML: the module's docstring says what is kept and what stays text."""
    env: dict[str, Any] = {}
    return _MD.render(text, env)
