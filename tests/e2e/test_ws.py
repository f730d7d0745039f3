"""The browser WebSocket: a subscriber joining mid-job gets everything, once, in order."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from tests.cluster import Cluster, output_lines


async def test_late_websocket_subscriber_gets_history_then_live_without_gap_or_duplicate(queen: Cluster) -> None:
    await queen.add_drone("d1")
    script = 'i=1; while [ $i -le 300 ]; do echo "line $i"; sleep 0.004; i=$((i+1)); done'
    await queen.create_repo("live", ("print", [script]))
    job = await queen.trigger("live")
    await queen.wait_for(lambda: queen.events(job["id"]),
                         lambda evs: len(output_lines(evs, "job:cmd:stdout")) >= 30, "output to be stored")

    assert queen.http is not None
    received: list[dict[str, Any]] = []
    ws_url = queen.api.replace("http://", "ws://").replace("/api/v1", "/ws")
    async with queen.http.ws_connect(ws_url) as ws:
        await ws.send_json({"op": "subscribe", "topic": "job", "job": job["id"], "after": 0})
        while not received or received[-1].get("type") != "job:done":
            frame = await ws.receive(timeout=30)
            assert frame.type is WSMsgType.TEXT, frame
            message = json.loads(frame.data)
            if "seq" in message:
                received.append(message)

    stored = await queen.events(job["id"])
    assert [e["seq"] for e in received] == list(range(1, len(stored) + 1))
    assert received == stored
    assert output_lines(received, "job:cmd:stdout") == [f"line {i}" for i in range(1, 301)]


async def test_websocket_announces_job_status_and_drones(queen: Cluster) -> None:
    assert queen.http is not None
    ws_url = queen.api.replace("http://", "ws://").replace("/api/v1", "/ws")
    await queen.create_repo("app", ("test", ["true"]))
    async with queen.http.ws_connect(ws_url) as ws:
        await ws.send_json({"op": "subscribe", "topic": "drones"})
        await ws.send_json({"op": "subscribe", "topic": "jobs"})
        await ws.send_str("not json")
        first = json.loads((await ws.receive(timeout=10)).data)
        assert first == {"type": "drones", "drones": []}
        await queen.add_drone("d1")
        job = await queen.trigger("app")
        seen: list[dict[str, Any]] = []
        while not any(m.get("status") == "passed" for m in seen):
            seen.append(json.loads((await ws.receive(timeout=30)).data))

    assert any(m["type"] == "error" and "not JSON" in m["error"] for m in seen)
    assert any(m["type"] == "drones" and [d["id"] for d in m["drones"]] == ["d1"] for m in seen)
    about_job = [m for m in seen if m.get("job") == job["id"]]
    assert about_job[0]["type"] == "job:new" and about_job[0]["repo"] == "app" and about_job[0]["number"] == 1
    statuses = [m["status"] for m in about_job if m["type"] == "job:update" and "status" in m]
    assert statuses == ["dispatched", "running", "passed"]
    assert about_job[0]["status"] in ("queued", "dispatched")


async def test_only_the_queens_own_pages_may_open_the_websocket(queen: Cluster) -> None:
    assert queen.http is not None
    ws_url = queen.api.replace("http://", "ws://").replace("/api/v1", "/ws")
    own = queen.api.removesuffix("/api/v1")
    for origin in ("http://evil.example", own.rsplit(":", 1)[0] + ":1", "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await queen.http.ws_connect(ws_url, origin=origin)
        assert refused.value.status == 403, origin
    async with queen.http.ws_connect(ws_url, origin=own) as ws:  # the dashboard's own
        await ws.send_json({"op": "subscribe", "topic": "jobs"})
        assert json.loads((await ws.receive(timeout=10)).data) == {"type": "subscribed", "topic": "jobs"}


async def test_a_subscription_sends_a_jobs_history_once_and_their_number_is_capped(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_repo("app", ("print", ["seq 1 50"]))
    job = await queen.trigger("app")
    await queen.wait_job(job["id"])
    stored = await queen.events(job["id"])
    others = [await queen.trigger("app") for _ in range(70)]
    assert queen.http is not None
    ws_url = queen.api.replace("http://", "ws://").replace("/api/v1", "/ws")
    async with queen.http.ws_connect(ws_url) as ws:
        # Asking again and again for the same job: its history goes out once.
        for _ in range(100):
            await ws.send_json({"op": "subscribe", "topic": "job", "job": job["id"], "after": 0})
        # Many jobs at once: the connection follows at most 64.
        for other in others:
            await ws.send_json({"op": "subscribe", "topic": "job", "job": other["id"], "after": 0})
        await ws.send_json({"op": "subscribe", "topic": "jobs"})
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1] != {"type": "subscribed", "topic": "jobs"}:
            messages.append(json.loads((await ws.receive(timeout=10)).data))
    events = [m for m in messages if m.get("job") == job["id"] and "seq" in m]
    assert events == stored
    assert sum(m.get("already") is True for m in messages) == 99
    errors = [m["error"] for m in messages if m.get("type") == "error"]
    assert sum("at most 64 jobs" in e for e in errors) == 70 - 63
