"""Markdown people write (comments on jobs) as HTML a page may show: no HTML of theirs ever reaches it.

`render(text)` is pure. It uses markdown-it-py (CommonMark, plus tables and ~~strikethrough~~) with:

* ``html: False``: raw HTML in the text (``<script>``, ``<img onerror=…>``, ``<a href=…>``) is shown as
  text, escaped, never passed through;
* links only to ``http:``, ``https:`` and ``mailto:`` (`link_allowed`): ``javascript:``, ``data:``,
  ``vbscript:``, relative and scheme-less links (``//host``, spelled with entities or tabs or not) stay
  text, and so do http(s) links with a user or password (``http://user:pass@evil.example/`` reads as
  another host) and mailto links without an address (``mailto:?subject=x``, ``mailto:javascript:x``);
  each link gets ``rel="nofollow noopener noreferrer"``;
* no images: ``![alt](url)`` is a link to the address, not an ``<img>`` (a picture from elsewhere would
  tell its server who reads the page, and when; the pages' Content-Security-Policy refuses them too);
* no inline style: a table column's alignment is a class, ``align-left|center|right`` (the pages'
  Content-Security-Policy refuses style attributes; the stylesheet aligns them);
* no linkify (bare addresses stay text) and markdown-it's nesting bound (20 levels).

Input is bounded by the caller (apiary.queen.comment_rules.MAX_TEXT characters), and so is the work and
the output: a table wider than MAX_COLUMNS columns or with more than MAX_CELLS cells in all (a short row
still gets every column: a 10,000-character text once made 65,000 cells, 667 KB) and a rendering over
MAX_HTML characters (link references repeated) are refused with `TooLarge` (a BadRequest on ``text``).
A table's rows are parsed only as far as its cell budget allows. The hostile inputs in
tests/unit/test_safe_markdown.py render in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_block.table import table as _table
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from apiary.core.errors import BadRequest

ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
# stored with each rendering: a comment rendered by an older version is rendered again
# (2: alignment as classes, images as plain links, links with userinfo and address-less mailto as text)
RENDERER_VERSION = 2
MAX_COLUMNS = 32  # of one table
MAX_CELLS = 1_000  # of all the tables in one text, header cells included
MAX_HTML = 64 * 1024  # characters of one rendering
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
# mailto's address: someone@somewhere (several, comma-separated), before any ?query; no further scheme
_MAILTO = re.compile(r"[^@\s?:/,]+@[^@\s?:/,]+(,[^@\s?:/,]+@[^@\s?:/,]+)*(\?.*)?", re.DOTALL)


class TooLarge(BadRequest):
    """The text would render too large (tables, or the whole): refused, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"text: {reason}", field="text")


def link_allowed(url: str) -> bool:
    """Whether a (normalised) link may be a link: an absolute http or https address of a host without a user
    or password, or a mailto with an address; nothing else."""
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() not in ALLOWED_SCHEMES:
        return False
    rest = url[match.end():]
    if match.group(1).lower() == "mailto":
        return _MAILTO.fullmatch(rest) is not None
    # http(s) needs a host ("http:foo" is relative to the page in a browser), and no userinfo before it
    # ("http://trusted.example@evil.example/" goes to evil.example)
    if not rest.startswith("//") or len(rest) <= 2:
        return False
    authority = re.split(r"[/?#\\]", rest[2:], maxsplit=1)[0]
    return "@" not in authority and bool(authority)


def _link_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


def _image_as_link(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                   env: EnvType) -> str:
    """``![alt](src)`` as ``<a href=src>alt</a>``: the address to follow, never a picture fetched."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    title = token.attrGet("title")
    titled = f' title="{escapeHtml(str(title))}"' if title else ""
    return f'<a href="{escapeHtml(src)}"{titled} rel="nofollow noopener noreferrer">{escapeHtml(alt)}</a>'


def _columns(state: StateBlock, line: int) -> int:
    """How many columns a table whose delimiter row is `line` has (markdown-it's count: cells of that row)."""
    text = state.src[state.bMarks[line] + state.tShift[line]:state.eMarks[line]]
    return sum(1 for part in text.split("|") if part.strip())


def _bounded_table(state: StateBlock, startLine: int, endLine: int, silent: bool) -> bool:  # noqa: N803
    """markdown-it's table, refused (TooLarge) beyond MAX_COLUMNS or the cells left of MAX_CELLS, and given
    only as many lines as those cells allow (each row gets every column, however short it is written)."""
    if not _table(state, startLine, endLine, True):
        return False
    if silent:
        return True
    columns = _columns(state, startLine + 1)
    if columns > MAX_COLUMNS:
        raise TooLarge(f"a table of {columns} columns; at most {MAX_COLUMNS}")
    left = MAX_CELLS - state.env.get("cells", 0)
    rows_allowed = left // columns - 1  # the header row's cells count too
    if rows_allowed < 0:
        raise TooLarge(f"more than {MAX_CELLS:,} table cells in all")
    first = len(state.tokens)
    # One line beyond what is allowed: a table that takes it is too large.
    if not _table(state, startLine, min(endLine, startLine + 2 + rows_allowed + 1), False):
        return False
    made = state.tokens[first:]
    rows = sum(1 for t in made if t.type == "tr_open") - 1
    if rows > rows_allowed:
        raise TooLarge(f"more than {MAX_CELLS:,} table cells in all (a row has every column: "
                       f"{columns} here)")
    state.env["cells"] = state.env.get("cells", 0) + columns * (rows + 1)
    for t in made:  # alignment as a class the stylesheet knows, not a style attribute the CSP refuses
        style = t.attrs.pop("style", None) if t.attrs else None
        if isinstance(style, str) and style.startswith("text-align:"):
            t.attrSet("class", "align-" + style.split(":", 1)[1])
    return True


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.block.ruler.at("table", _bounded_table, {"alt": ["paragraph", "reference"]})
    md.validateLink = link_allowed  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _parser()


def render(text: str) -> str:
    """`text` (markdown) as safe HTML: the module's docstring says what is kept and what stays text.

    TooLarge when its tables or its rendering would be too large."""
    env: dict[str, Any] = {}
    html = _MD.render(text, env)
    if len(html) > MAX_HTML:
        raise TooLarge(f"renders to {len(html):,} characters of HTML; at most {MAX_HTML:,} (fewer repeated "
                       "links or tables)")
    return html


def render_stored(text: str) -> str:
    """`text` as `render` makes it, or, when it is too large now (written under older limits), as plain text."""
    try:
        return render(text)
    except TooLarge:
        return f"<pre>{escapeHtml(text)}</pre>\n"
