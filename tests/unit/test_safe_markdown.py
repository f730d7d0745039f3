"""Comments' markdown as a page shows it: formatting kept, nothing of the author's HTML, links only to
http, https and mailto, no images (apiary.queen.safe_markdown)."""

from __future__ import annotations

import time

import pytest

from apiary.queen.comment_rules import MAX_TEXT
from apiary.queen.safe_markdown import MAX_CELLS, MAX_COLUMNS, MAX_HTML, TooLarge, link_allowed, render, render_stored

REL = 'rel="nofollow noopener noreferrer"'


@pytest.mark.parametrize(("text", "html"), [
    ("**bold** and `code`", "<p><strong>bold</strong> and <code>code</code></p>\n"),
    ("~~gone~~", "<p><s>gone</s></p>\n"),
    ("[docs](https://example.com/a?b=1&c=2)",
     f'<p><a href="https://example.com/a?b=1&amp;c=2" {REL}>docs</a></p>\n'),
    ("<https://example.com>", f'<p><a href="https://example.com" {REL}>https://example.com</a></p>\n'),
    ("[mail me](mailto:ada@example.com)", f'<p><a href="mailto:ada@example.com" {REL}>mail me</a></p>\n'),
    # raw HTML, as text
    ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n"),
    ("<img src=x onerror=alert(1)>", "<p>&lt;img src=x onerror=alert(1)&gt;</p>\n"),
    ('<a href="javascript:alert(1)">x</a>', "<p>&lt;a href=&quot;javascript:alert(1)&quot;&gt;x&lt;/a&gt;</p>\n"),
    ("<div>\n<script>alert(1)</script>\n</div>",
     "<p>&lt;div&gt;\n&lt;script&gt;alert(1)&lt;/script&gt;\n&lt;/div&gt;</p>\n"),
    ("```html\n<script>x</script>\n```", '<pre><code class="language-html">&lt;script&gt;x&lt;/script&gt;\n</code></pre>\n'),
    # links to anything but http, https, mailto stay text, however spelled
    ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>\n"),
    ("[x](JaVaScRiPt:alert(1))", "<p>[x](JaVaScRiPt:alert(1))</p>\n"),
    ("[x](jav&#x61;script:alert(1))", "<p>[x](javascript:alert(1))</p>\n"),
    ("[x](java\tscript:alert(1))", "<p>[x](java\tscript:alert(1))</p>\n"),
    ("<javascript:alert(1)>", "<p>&lt;javascript:alert(1)&gt;</p>\n"),
    ("[x](data:text/html;base64,PHNjcmlwdD4=)", "<p>[x](data:text/html;base64,PHNjcmlwdD4=)</p>\n"),
    ("[x](vbscript:msgbox)", "<p>[x](vbscript:msgbox)</p>\n"),
    ("[x](//evil.example)", "<p>[x](//evil.example)</p>\n"),
    ("[x](/api/v1/prune)", "<p>[x](/api/v1/prune)</p>\n"),
    ("[x](http:evil)", "<p>[x](http:evil)</p>\n"),
    # a title cannot break out of its attribute
    ('[x](https://a.example "t\\" onclick=alert(1)")',
     f'<p><a href="https://a.example" title="t&quot; onclick=alert(1)" {REL}>x</a></p>\n'),
    # images are links to their address, never fetched by the page
    ("![chart](https://evil.example/pixel.png)", f'<p><a href="https://evil.example/pixel.png" {REL}>chart</a></p>\n'),
    ("![](https://a.example/p.png)", f'<p><a href="https://a.example/p.png" {REL}>https://a.example/p.png</a></p>\n'),
    ("![<b>](https://a.example/p.png \"t\")", f'<p><a href="https://a.example/p.png" title="t" {REL}>&lt;b&gt;</a></p>\n'),
    # mailto needs an address; http(s) no user or password before the host
    ("[x](mailto:javascript:alert(18))", "<p>[x](mailto:javascript:alert(18))</p>\n"),
    ("[x](mailto:?subject=x)", "<p>[x](mailto:?subject=x)</p>\n"),
    ("[x](http://user:pass@evil.example/)", "<p>[x](http://user:pass@evil.example/)</p>\n"),
    ("<http://trusted.example@evil.example/>", "<p>&lt;http://trusted.example@evil.example/&gt;</p>\n"),
    # a table's alignment is a class (the pages' CSP refuses style attributes)
    ("|a|b|c|\n|:-|:-:|-:|\n|1|2|3|",
     '<table>\n<thead>\n<tr>\n<th class="align-left">a</th>\n<th class="align-center">b</th>\n'
     '<th class="align-right">c</th>\n</tr>\n</thead>\n<tbody>\n<tr>\n<td class="align-left">1</td>\n'
     '<td class="align-center">2</td>\n<td class="align-right">3</td>\n</tr>\n</tbody>\n</table>\n'),
    ("![x](javascript:alert(1))", "<p>![x](javascript:alert(1))</p>\n"),
    ("plain https://example.com", "<p>plain https://example.com</p>\n"),  # no linkify
])
def test_render(text: str, html: str) -> None:
    assert render(text) == html


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://example.com", True), ("http://example.com/x", True), ("mailto:a@b.example", True),
    ("mailto:a@b.example?subject=hi", True), ("mailto:a@b.example,c@d.example", True),
    ("mailto:javascript:alert(18)", False), ("mailto:?subject=x", False), ("mailto:a", False),
    ("http://user:pass@evil.example/", False), ("https://trusted.example@evil.example", False),
    ("https://example.com/a@b", True), ("https://example.com?to=a@b", True),
    ("HTTPS://EXAMPLE.COM", True), ("javascript:alert(1)", False), ("data:text/html,x", False), ("/local", False),
    ("//host", False), ("https:", False), ("https://", False), ("mailto:", False), ("ftp://x", False), ("", False),
    ("file:///etc/passwd", False),
])
def test_link_allowed(url: str, allowed: bool) -> None:
    assert link_allowed(url) is allowed


# The largest texts a comment may be, written to cost the most: each renders (or is refused) in milliseconds.
HOSTILE = ["[" * MAX_TEXT, "*a" * (MAX_TEXT // 2), "> " * (MAX_TEXT // 2), "`" * MAX_TEXT, "![" * (MAX_TEXT // 2),
           "[a](" * (MAX_TEXT // 4), "<" * MAX_TEXT, '"' * MAX_TEXT, "- " * (MAX_TEXT // 2), "1. " * (MAX_TEXT // 3),
           "|a" * (MAX_TEXT // 4) + "\n" + "|-" * (MAX_TEXT // 4 - 1),  # 2,500 columns
           "|a" * 1000 + "|\n" + "|-" * 1000 + "|\n" + "x\n" * 2998,  # once 65,000 cells, 667 KB
           "|a" * 32 + "|\n" + "|-" * 32 + "|\n" + "x\n" * 4000,  # as wide as allowed, rows of one character
           "|a|b|\n|-|-|\n|1|2|\n\n" * 500,  # many small tables
           "[a]: https://example.com/" + "x" * 1000 + "\n\n" + "[a]" * 2900,  # one long link, referred to often
           "*" * 5000 + "a" + "_" * 4999, "[" * 5000 + "]" * 5000, "\\" * MAX_TEXT, "&amp;" * (MAX_TEXT // 5)]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_inputs_of_the_largest_size_render_small_and_escaped_or_are_refused(hostile: str) -> None:
    assert len(hostile) <= MAX_TEXT
    start = time.perf_counter()
    try:
        html = render(hostile)
    except TooLarge as refused:
        html, said = "", f"refused: {refused}"
    else:
        said = f"{len(html):,} characters of HTML"
    print(f"{hostile[:6]!r}… ({len(hostile)} characters): {time.perf_counter() - start:.3f} s, {said}")
    assert "<script" not in html and "<img" not in html and "style=" not in html and len(html) <= MAX_HTML


@pytest.mark.parametrize(("text", "says"), [
    ("|a" * (MAX_COLUMNS + 1) + "|\n" + "|-" * (MAX_COLUMNS + 1) + "|\n", f"a table of {MAX_COLUMNS + 1} columns"),
    ("|a" * 1000 + "|\n" + "|-" * 1000 + "|\n" + "x\n" * 3000, "a table of 1000 columns"),
    ("|a|b|\n|-|-|\n" + "x\n" * MAX_CELLS, f"more than {MAX_CELLS:,} table cells"),
    ("|a|b|\n|-|-|\n|1|2|\n\n" * 300, f"more than {MAX_CELLS:,} table cells in all"),
    ("[a]: https://example.com/" + "x" * 1000 + "\n\n" + "[a]" * 2900, "renders to 1,"),
])
def test_too_large_a_rendering_is_refused_with_its_reason(text: str, says: str) -> None:
    with pytest.raises(TooLarge) as refused:
        render(text)
    assert str(refused.value).startswith("text: ") and says in str(refused.value) and refused.value.field == "text"


def test_the_largest_allowed_table_renders_and_a_stored_text_too_large_now_shows_as_text() -> None:
    rows = MAX_CELLS // MAX_COLUMNS - 1  # the header row counts
    table = "|a" * MAX_COLUMNS + "|\n" + "|-" * MAX_COLUMNS + "|\n" + "x\n" * rows
    assert render(table).count("<td") == rows * MAX_COLUMNS
    with pytest.raises(TooLarge):
        render(table + "x\n")
    assert render_stored("|a|b|\n|-|-|\n" + "<x>\n" * MAX_CELLS).startswith("<pre>|a|b|\n|-|-|\n&lt;x&gt;")
