"""/metrics for Prometheus: admins read it with a token on the API port (members and strangers are refused),
or anyone reaches it on the listener metrics_bind names, which serves nothing else. After a job has run,
it counts that job, its dispatch and duration, the events it stored and the pool's slots."""

from __future__ import annotations

import re
import socket
from typing import Any

import aiohttp

from tests.cluster import Cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample(text: str, name: str) -> float:
    """The value of one sample line (`name` with its labels, as Prometheus writes it)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"no {name} in:\n{text}"
    return float(match[1])


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str, str]:
    async with http.get(url, headers=headers, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def _session(http: aiohttp.ClientSession, api: str, path: str, body: dict[str, Any],
                   csrf: str = "") -> dict[str, Any]:
    async with http.post(api + path, json=body, headers={"X-CSRF-Token": csrf} if csrf else {}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def test_metrics_count_a_job_for_admins_only_and_alone_on_metrics_bind(cluster: Cluster) -> None:
    port = _free_port()
    await cluster.start_queen(env={"APIARY_QUEEN_METRICS_BIND": f"127.0.0.1:{port}"})
    await cluster.add_drone("d1", capacity=2)
    await cluster.create_repo("app", ("build", ["echo hello", "echo world"]))
    job = await cluster.wait_job((await cluster.trigger("app"))["id"])
    assert job["status"] == "passed"
    base = cluster.api.removesuffix("/api/v1")

    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as admin, aiohttp.ClientSession() as stranger, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as member:
        setup_token = (cluster.tmp / "queen" / "setup-token").read_text().strip()
        csrf = (await _session(admin, cluster.api, "/setup", {"token": setup_token, "username": "ada",
                                                              "password": "correct horse"}))["csrf"]
        token = (await _session(admin, cluster.api, "/tokens", {"name": "prometheus"}, csrf))["token"]
        await _session(admin, cluster.api, "/users", {"username": "bob", "password": "bob's long pw",
                                                      "role": "member"}, csrf)
        await _session(member, cluster.api, "/session", {"username": "bob", "password": "bob's long pw"})

        status, _, body = await _get(stranger, base + "/metrics")
        assert status == 401 and "sign in" in body
        assert (await _get(member, base + "/metrics"))[0] == 403
        status, kind, text = await _get(stranger, base + "/metrics", Authorization=f"Bearer {token}")
        assert status == 200 and kind.startswith("text/plain"), (status, text)

        assert sample(text, 'apiary_jobs{state="passed"}') == 1
        assert sample(text, 'apiary_jobs{state="queued"}') == 0 == sample(text, "apiary_queue_length")
        assert sample(text, "apiary_dispatch_latency_seconds_count") == 1
        assert sample(text, 'apiary_job_duration_seconds_count{state="passed"}') == 1
        assert sample(text, "apiary_events_stored_total") >= 4  # at least the job's start, two lines, its end
        assert sample(text, "apiary_event_bytes_stored_total") >= len("hello\nworld\n")
        assert sample(text, "apiary_store_errors_total") == 0
        assert (sample(text, "apiary_drones"), sample(text, "apiary_drone_slots"),
                sample(text, "apiary_drone_free_slots")) == (1, 2, 2)

        # The metrics_bind listener: the same figures to anyone who reaches it, and nothing else.
        status, _, alone = await _get(stranger, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and sample(alone, 'apiary_jobs{state="passed"}') == 1
        for path in ("/", "/api/v1/jobs", "/metrics/../api/v1/jobs"):
            assert (await _get(stranger, f"http://127.0.0.1:{port}{path}"))[0] == 404
