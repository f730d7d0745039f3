"""Comments' markdown as a page shows it: formatting kept, nothing of the author's HTML, links only to
http, https and mailto, no images (apiary.queen.safe_markdown)."""

from __future__ import annotations

import time

import pytest

from apiary.queen.comment_rules import MAX_TEXT
from apiary.queen.safe_markdown import link_allowed, render

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
    ("![chart](https://evil.example/pixel.png)", f'<p>!<a href="https://evil.example/pixel.png" {REL}>chart</a></p>\n'),
    ("![x](javascript:alert(1))", "<p>![x](javascript:alert(1))</p>\n"),
    ("plain https://example.com", "<p>plain https://example.com</p>\n"),  # no linkify
])
def test_render(text: str, html: str) -> None:
    assert render(text) == html


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://example.com", True), ("http://example.com/x", True), ("mailto:a@b.example", True),
    ("HTTPS://EXAMPLE.COM", True), ("javascript:alert(1)", False), ("data:text/html,x", False), ("/local", False),
    ("//host", False), ("https:", False), ("https://", False), ("mailto:", False), ("ftp://x", False), ("", False),
    ("file:///etc/passwd", False),
])
def test_link_allowed(url: str, allowed: bool) -> None:
    assert link_allowed(url) is allowed


@pytest.mark.parametrize("hostile", ["[" * MAX_TEXT, "*a" * (MAX_TEXT // 2), "> " * (MAX_TEXT // 2), "`" * MAX_TEXT,
                                     "![" * (MAX_TEXT // 2), "[a](" * (MAX_TEXT // 4), "<" * MAX_TEXT,
                                     "|a" * (MAX_TEXT // 4) + "\n" + "|-" * (MAX_TEXT // 4)])
def test_hostile_inputs_of_the_largest_size_render_and_stay_escaped(hostile: str) -> None:
    start = time.perf_counter()
    html = render(hostile)
    print(f"{hostile[:6]!r}… ({len(hostile)} characters): {time.perf_counter() - start:.3f} s")
    assert "<script" not in html and "<img" not in html
