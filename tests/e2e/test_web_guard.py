"""On a real queen: the headers every answer carries, and requests whose headers or body never end are cut off.
The cross-site rule, links, throttling and connection decisions as tables: tests/unit/test_web_guard.py."""

from __future__ import annotations

import asyncio
import time

from tests.cluster import Cluster


async def test_every_answer_carries_the_security_headers(queen: Cluster) -> None:
    assert queen.http is not None
    base = queen.api.removesuffix("/api/v1")
    paths = ["/", "/signin", "/drones", "/static/apiary.js", "/static/apiary.css", "/no/such/page",
             "/api/v1/jobs", "/api/v1/no-such-endpoint", "/api/v1/openapi.json", "/badge/none.svg"]
    for path in paths:
        async with queen.http.get(base + path) as resp:
            headers = resp.headers
            assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), path
            assert "script-src 'self'" in headers["Content-Security-Policy"], path
            assert "unsafe-inline" not in headers["Content-Security-Policy"], path
            assert headers.get("X-Content-Type-Options") == "nosniff", path
            assert headers.get("Referrer-Policy") == "same-origin", path
            assert headers.get("X-Frame-Options") == "DENY", path
    # A refused request is an answer too.
    async with queen.http.post(queen.api + "/repos", data=b"{}", headers={"Content-Type": "text/plain"}) as resp:
        assert resp.status == 415 and resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_request_whose_headers_or_body_never_end_is_cut_off(cluster: Cluster) -> None:
    await cluster.start_queen(env={"APIARY_QUEEN_HTTP_TIMEOUT": "1"})
    host, port = cluster.api.split("//")[1].split("/")[0].rsplit(":", 1)
    started = time.monotonic()
    stalled = []
    for partial in (b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                    b"POST /api/v1/repos HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"name\": "):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(partial)
        await writer.drain()
        stalled.append((reader, writer))
    for reader, writer in stalled:
        answer = await asyncio.wait_for(reader.read(), 10)  # b"" once the queen closes it
        writer.close()
        assert b"201" not in answer
    waited = time.monotonic() - started
    print(f"\nstalled headers and a stalled body: both closed by the queen after {waited:.1f} s (http_timeout 1 s)")
    assert (await cluster.get("/repos"))["repos"] == []
