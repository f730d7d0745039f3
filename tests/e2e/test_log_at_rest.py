"""A job's output is kept compressed at rest and sent compressed to clients that accept it: the same
text whichever way it is read (raw log with zstd, gzip or none; the events API), every line once and in
order."""

from __future__ import annotations

import asyncio
import gzip
import re

import aiohttp

from apiary.queen.store.chunks import MIN_BYTES, zstd
from tests.cluster import Cluster, all_events

# 20,000 numbered lines on stdout, a few on stderr, and a multi-byte character split across pipe reads.
PRINTER = ("i=0; while [ $i -lt 20000 ]; do echo \"line $i: $(printf '%070d' $i) é\"; i=$((i+1)); done; "
           "echo oops >&2; printf 'tail without newline'")


async def raw_log(queen: Cluster, job_id: str, accept: str | None) -> tuple[str | None, bytes]:
    """(Content-Encoding, body as sent): the raw log fetched by a client that decodes nothing itself."""
    headers = {"Accept-Encoding": accept} if accept is not None else {}
    base = queen.api.removesuffix("/api/v1")
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Accept-Encoding",)) as http, \
            http.get(f"{base}/jobs/{job_id}/log", headers=headers) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        assert resp.headers.get("Vary") == "Accept-Encoding"
        return resp.headers.get("Content-Encoding"), await resp.read()


async def test_output_is_compressed_at_rest_and_reads_back_the_same_every_way(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("chatty", ("print", [PRINTER]))
    job = await queen.wait_job((await queen.trigger("chatty"))["id"])
    assert job["status"] == "passed"

    coding, plain = await raw_log(queen, job["id"], None)
    assert coding is None
    text = plain.decode()
    numbers = [int(n) for n in re.findall(r"^line (\d+): \d{70} é$", text, re.MULTILINE)]
    assert numbers == list(range(20_000))
    # Two pipes: stderr's line is in, where the reads put it (merge_output keeps the exact order).
    assert text.count("oops\n") == 1 and text.replace("oops\n", "").endswith("tail without newline")

    coding, body = await raw_log(queen, job["id"], "gzip, deflate, br, zstd")
    assert coding == "zstd" and len(body) < len(plain) / 10
    assert zstd.decompress(body) == plain  # the stored frames, concatenated: one zstd stream
    coding, body = await raw_log(queen, job["id"], "gzip;q=1, zstd;q=0")
    assert coding == "gzip" and gzip.decompress(body) == plain
    coding, body = await raw_log(queen, job["id"], "identity")
    assert coding is None and body == plain

    # The events API gives the text back, the same lines in the same order.
    events = await all_events(queen.get, job["id"])
    stdout = "".join(e["text"] for e in events if e["type"] == "job:cmd:stdout")
    assert stdout == text.replace("oops\n", "")
    assert all("z" not in e and "n" not in e for e in events)

    # At rest: output as zstd frames with their size, no text.
    assert queen.queen is not None
    with queen.raw_store() as raw:
        stored = list(raw.events.find({"job": job["id"], "type": "job:cmd:stdout"}))
    compressed = [d for d in stored if "z" in d]
    assert compressed and all("text" not in d and isinstance(d["z"], bytes) for d in compressed)
    assert all(len(d["text"]) < MIN_BYTES for d in stored if "z" not in d)  # a frame would not pay for itself
    kept = sum(len(d["z"]) if "z" in d else len(d["text"]) for d in stored)
    printed = sum(d["n"] if "z" in d else len(d["text"].encode()) for d in stored)
    assert printed == len(stdout.encode())
    print(f"\nstdout of {printed:,} bytes kept as {kept:,} bytes (x{printed / kept:.1f})")


async def test_head_of_a_log_is_headers_only_and_an_empty_log_is_a_valid_stream(queen: Cluster) -> None:
    """A job decides what its log says: after a HEAD's headers nothing may follow on the connection, or the
    next answer on it would be the log (here: a forged HTTP answer the job printed)."""
    await queen.add_drone("d1")
    forged = "HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\nContent-Length: 8\\r\\n\\r\\n<script>"
    await queen.create_repo("forger", ("print", [f"printf '{forged}'"]), ("quiet", ["true"]))
    job = await queen.wait_job((await queen.trigger("forger"))["id"])
    assert job["status"] == "passed"
    host, port = queen.api.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"HEAD /jobs/{job['id']}/log HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                 f"GET /api/v1/drones HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    answers = (await asyncio.wait_for(reader.read(), 10)).decode(errors="replace")
    writer.close()
    assert answers.count("HTTP/1.1 200 OK") == 2 and "<script>" not in answers
    assert answers.split("\r\n\r\n", 2)[1].startswith("HTTP/1.1 200 OK")  # the HEAD's answer ends at its headers
    assert '"drones"' in answers

    # A job that printed nothing: an empty log, and for a zstd client a valid (empty) zstd stream.
    await queen.create_repo("silent", ("quiet", ["true"]))
    job = await queen.wait_job((await queen.trigger("silent"))["id"])
    coding, body = await raw_log(queen, job["id"], "zstd")
    assert coding == "zstd" and body and zstd.decompress(body) == b""
    assert await raw_log(queen, job["id"], None) == (None, b"")
