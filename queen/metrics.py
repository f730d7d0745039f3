"""The queen's figures for Prometheus: ``GET /metrics`` in its text format (the prometheus-client package).

Who may read it: admins on the API port (a token, ``Authorization: Bearer apiary_…``, as Prometheus's
``authorization`` setting sends it), or anyone who reaches the listener `metrics_bind` names, which serves
nothing else (for a Prometheus on the queen's machine or a private network).

What it says (names after Prometheus's conventions: base units, ``_total`` for counters):

- ``apiary_jobs{state}``: jobs in the store by state (queued, dispatched, running, waiting, passed, …);
- ``apiary_queue_length``: jobs waiting for a drone (queued);
- ``apiary_dispatch_latency_seconds``: histogram, from a job's trigger to its start on a drone (first attempt);
- ``apiary_job_duration_seconds{state}``: histogram, from a job's first start to its end, by final state;
- ``apiary_events_stored_total``, ``apiary_event_bytes_stored_total``: drone events stored, and about how many
  bytes of output and artifacts they carried, since this queen started;
- ``apiary_store_errors_total``: writes the store refused or did not answer (each is retried);
- ``apiary_drones``, ``apiary_drone_slots``, ``apiary_drone_free_slots``: the pool now.

The histograms hear jobs start and end from the queen's job listeners (apiary.queen.hub); the rest is read
when scraped: the store's counts in one aggregation, the pool and the recorder's counters from memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from apiary.core.protocol import JobStatus
from apiary.queen import keys
from apiary.queen.hub import Hub

log = logging.getLogger(__name__)

PATH = "/metrics"
# Seconds: from a few milliseconds (a dispatch on an idle pool) to an hour (a job queued behind a busy pool).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds: a trivial job to a long build.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)

class _Now(Collector):
    """What is read at each scrape: set by `Metrics.render` just before the registry is written out."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.pool = (0, 0, 0)  # drones, slots, free slots
        self.recorder = (0, 0, 0)  # events stored, their bytes, store errors

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("apiary_jobs", "Jobs in the store by state.", labels=["state"])
        for state in JobStatus:
            jobs.add_metric([state.value], self.jobs.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily("apiary_queue_length", "Jobs waiting for a drone.",
                                value=self.jobs.get(JobStatus.QUEUED.value, 0))
        drones, slots, free = self.pool
        yield GaugeMetricFamily("apiary_drones", "Drones connected.", value=drones)
        yield GaugeMetricFamily("apiary_drone_slots", "Job slots of the connected drones.", value=slots)
        yield GaugeMetricFamily("apiary_drone_free_slots", "Job slots free now.", value=free)
        events, size, errors = self.recorder
        yield CounterMetricFamily("apiary_events_stored", "Drone events stored since the queen started.",
                                  value=events)
        yield CounterMetricFamily("apiary_event_bytes_stored", "About how many bytes of output and artifacts "
                                  "the stored events carried.", value=size)
        yield CounterMetricFamily("apiary_store_errors", "Store writes refused or not answered (each retried).",
                                  value=errors)


class Metrics:
    """The queen's registry and the histograms its job listener fills; `render` answers a scrape."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._now = _Now()
        self.registry.register(self._now)
        self.dispatch_latency = Histogram("apiary_dispatch_latency_seconds",
                                          "Seconds from a job's trigger to its start on a drone (first attempt).",
                                          buckets=LATENCY_BUCKETS, registry=self.registry)
        self.job_duration = Histogram("apiary_job_duration_seconds",
                                      "Seconds from a job's first start to its end, by final state.", ["state"],
                                      buckets=DURATION_BUCKETS, registry=self.registry)
        self._reading: set[asyncio.Task[None]] = set()
        self._store: Any = None
        hub.listen_jobs(self._heard)

    def _heard(self, job_id: str, status: str, job: dict[str, Any] | None) -> None:
        """A job started or ended (apiary.queen.hub). Without its document (a change the hive made), it is read."""
        if status != JobStatus.RUNNING.value and status not in {s.value for s in JobStatus if s.final}:
            return
        if job is not None:
            self._observe(status, job)
        elif self._store is not None:
            task = asyncio.create_task(self._read_and_observe(job_id, status))
            self._reading.add(task)
            task.add_done_callback(self._reading.discard)

    async def _read_and_observe(self, job_id: str, status: str) -> None:
        try:
            job = await self._store.get_job(job_id)
        except Exception as exc:  # the store away: this one job is not counted in the histograms
            log.debug("metrics: job %s not read (%s)", job_id, exc)
            return
        if job is not None:
            self._observe(status, job)

    def _observe(self, status: str, job: dict[str, Any]) -> None:
        started, created = job.get("started"), job.get("created")
        first_start = min((h["started"] for h in job.get("history") or () if isinstance(h, dict)
                           and isinstance(h.get("started"), (int, float))), default=started)
        if status == JobStatus.RUNNING.value:
            if int(job.get("attempt") or 1) == 1 and isinstance(started, (int, float)) and \
                    isinstance(created, (int, float)) and started >= created:
                self.dispatch_latency.observe(started - created)
            return
        finished = job.get("finished")
        if isinstance(first_start, (int, float)) and isinstance(finished, (int, float)) and finished >= first_start:
            self.job_duration.labels(status).observe(finished - first_start)

    async def render(self, app: web.Application) -> bytes:
        """The text a scrape gets: the store's job counts read now, the pool and recorder as they are."""
        store = app[keys.STORE]
        self._store = store
        counts = store.jobs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
        self._now.jobs = {str(row["_id"]): int(row["n"]) async for row in await counts}
        hive = app[keys.HIVE]
        drones = [d for d in hive.pool.drones.values() if d.route is not None]
        slots = sum(d.capacity for d in drones)
        free = sum(max(0, d.capacity - len(d.jobs)) for d in drones if not d.stopping)
        self._now.pool = (len(drones), slots, free)
        recorder = hive.recorder
        self._now.recorder = (recorder.stored, recorder.stored_bytes, recorder.store_errors)
        return generate_latest(self.registry)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
_MAIN: web.AppKey[web.Application] = web.AppKey("main app")


def setup(app: web.Application) -> None:
    """/metrics on the API port (admins only: apiary.queen.users.may), and the job listener behind it."""
    app[METRICS] = Metrics(app[keys.HUB])
    app.router.add_get(PATH, serve)


async def serve(request: web.Request) -> web.Response:
    app = request.app.get(_MAIN) or request.app  # the metrics_bind listener's app points at the queen's
    body = await app[METRICS].render(app)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def listener_app(main: web.Application) -> web.Application:
    """The app `metrics_bind` serves: GET /metrics and nothing else, read from the queen's `main` app."""
    app = web.Application()
    app[_MAIN] = main
    app.router.add_get(PATH, serve)
    return app
