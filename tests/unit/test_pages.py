"""Pages without a queen: a server error as an HTML page (a mocked request), times no clock shows. The
dashboard in a browser: tests/e2e/test_pages.py."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import make_mocked_request

from apiary.core.config import QueenConfig
from apiary.queen.app import init_app
from apiary.queen.pages import error_pages, fmt_iso, fmt_time


async def test_a_server_error_is_an_html_page_without_a_traceback(tmp_path: Path) -> None:
    app = init_app(QueenConfig(data_dir=str(tmp_path)))

    async def broken(request: aiohttp.web.Request) -> aiohttp.web.Response:
        raise RuntimeError("secret internals")

    response = await error_pages(make_mocked_request("GET", "/repos/x", app=app), broken)
    assert response.status == 500 and response.content_type == "text/html"
    assert "Something went wrong" in response.text and "secret internals" not in response.text
    assert "Traceback" not in response.text


def test_a_time_no_clock_shows_renders_as_nothing_not_an_error() -> None:
    assert fmt_time(1e300) == "" and fmt_iso(-1e300) == "" and fmt_iso(None) == ""
    assert fmt_iso(0.5) == "1970-01-01T00:00:00Z"
