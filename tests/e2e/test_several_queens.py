"""Several queens over one store (issue 19's ground): job numbers come from the store, so two queens
triggering at once never give two jobs one number, and a store from before the counter goes on from its
highest number."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cluster import Cluster


async def test_two_queens_on_one_store_number_jobs_uniquely_and_a_counter_starts_from_the_stored_jobs(
        queen: Cluster, tmp_path: Path) -> None:
    other = Cluster(tmp_path / "other", queen.store_url)
    other.database = queen.database  # the same database: two queens of one installation
    await other.start_queen()
    try:
        await queen.create_repo("app", ("s", ["true"]))
        jobs = await asyncio.gather(*(q.trigger("app") for _ in range(15) for q in (queen, other)))
        numbers = sorted(job["number"] for job in jobs)
        assert numbers == list(range(1, 31)), numbers

        # A store written before job numbers were counted in it: the counter is raised to the highest job.
        with queen.raw_store() as raw:
            raw.job_numbers.delete_many({})
        assert queen.queen is not None
        await queen.queen.stop()
        await queen.start_queen()
        assert (await queen.trigger("app"))["number"] == 31
        assert (await other.trigger("app"))["number"] == 32
    finally:
        await other.close()
