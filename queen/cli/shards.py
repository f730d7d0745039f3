"""apiary shards JOB: a job's test shards, each with its planned and real time (apiary.queen.shards).

    test: 8 tests in 2 shards, 8 with past durations (4 jobs read); planned 1.5 s at most (3.0 s split by count)
      shard 1 of 2   4 tests   planned 1.5 s   ran 1.9 s (job 3.8 s)   passed   job #5
      shard 2 of 2   4 tests   planned 1.5 s   ran 1.8 s (job 3.7 s)   passed   job #6
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say
from apiary.core.shards import shard_of

if TYPE_CHECKING:
    from apiary.cli.client import Client


def lines(stages: list[dict[str, Any]]) -> list[str]:
    """The text `apiary shards` prints for a job's shard plans (GET /jobs/{job}/shards' ``stages``)."""
    out = []
    for plan in stages:
        out.append(f"{plan['stage']}: {plan['tests']} tests in {plan['count']} shards, {plan.get('known', 0)} with past "
                   f"durations ({plan.get('history_jobs', 0)} jobs read); planned {_s(plan.get('makespan'))} at most "
                   f"({_s(plan.get('even_makespan'))} split by count)")
        for shard in plan.get("shards") or []:
            ran = f"ran {_s(shard['real'])}" if shard.get("real") is not None else "not ended"
            if shard.get("job_seconds") is not None:
                ran += f" (job {_s(shard['job_seconds'])})"
            job = f"job #{shard['number']}" if shard.get("number") is not None else "not made"
            out.append(f"  shard {shard['index']} of {plan['count']}   {shard['tests']} tests   planned "
                       f"{_s(shard['seconds'])}   {ran}   {shard.get('status') or 'queued'}   {job}")
    return out


def no_plans(name: str, job: dict[str, Any]) -> str:
    """What `apiary shards` says of job `name` (the API's job) that has no shard plans: a shard's child job
    which shard it is, an ended job that it ran none (and why, when it failed or was cancelled), a job without
    a sharded stage that it has none; else that they are planned once its tests are listed."""
    stages = (job.get("pipeline") or {}).get("stages") or []
    mine = shard_of(job)
    if mine:
        return f"{name} is shard {mine['shard']} of {mine['count']} of job #{mine['number']} ({mine['stage']})"
    if job.get("status") in ("passed", "failed", "errored", "cancelled"):
        why = f": {job['error']}" if job.get("error") else ""
        return f"{name} {job['status']} and ran no shards{why}"
    if not any(isinstance(s.get("shards"), dict) for s in stages):
        return f"{name} has no sharded stage"
    return f"{name} has no test shards yet: they are planned when its tests are listed"


def _s(seconds: Any) -> str:
    return f"{float(seconds):.1f} s" if isinstance(seconds, (int, float)) else "?"


async def shards(client: Client, args: argparse.Namespace) -> int:
    """apiary shards JOB [--json]."""
    from apiary.cli.client import q
    from apiary.cli.remote import job_id

    job = await job_id(client, args.job)
    stages: list[dict[str, Any]] = (await client.request("GET", f"/jobs/{q(job)}/shards"))["stages"]
    if args.json:
        import json

        print(json.dumps(stages, indent=2))
        return 0
    if not stages:
        say(no_plans(args.job, await client.request("GET", f"/jobs/{q(job)}")))
        return 0
    for line in lines(stages):
        say(line)
    return 0


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser], job_help: str) -> None:
    """`apiary shards JOB [--json]`."""
    shown = command(sub, "shards", "a job's test shards: each one's tests, planned and real time, and its job", """
apiary shards app#7
apiary shards app#7 --json""", parents)
    shown.add_argument("job", help=job_help)
    shown.add_argument("--json", action="store_true", help="the plans as the API gives them")
