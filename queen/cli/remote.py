"""The commands that ask a queen about its jobs and drones: trigger, rerun, ls, logs, artifacts, cancel, drones,
prune.

Each takes the client of the queen (apiary.cli.connect chooses it) and the parsed
arguments, and returns the command's exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apiary.cli.console import say
from apiary.core.errors import InputError
from apiary.core.protocol import FINAL_STATES

if TYPE_CHECKING:
    from apiary.cli.client import Client
    from apiary.cli.follow import Follower
    from apiary.core.models import JobBody

FINAL = {s.value for s in FINAL_STATES}
# A job as apiary ls names it: REPO#N, its number in the repository.
_NUMBERED = re.compile(r"(?P<repo>[^#/\s]+)#(?P<number>[1-9][0-9]*)")


def numbered(given: str) -> tuple[str, int] | None:
    """("app", 3) for "app#3", the name apiary ls and the dashboard show; None for anything else (a job id)."""
    match = _NUMBERED.fullmatch(given.strip())
    return (match.group("repo"), int(match.group("number"))) if match else None


async def job_id(client: Client, given: str) -> str:
    """The id of the job `given` names: REPO#N (asked of the queen: its repository's jobs by number) or an id."""
    from apiary.cli.client import ApiError, q

    found = numbered(given)
    if found is None:
        return given.strip()
    repo, number = found
    jobs = (await client.request("GET", f"/repos/{q(repo)}/jobs?number={number}&limit=1"))["jobs"]
    if not jobs or jobs[0].get("number") != number:  # a queen that ignores ?number gives the newest jobs
        raise ApiError(f"no job {given!r} (apiary ls {repo} lists its jobs; it may have been pruned)", 404)
    return str(jobs[0]["id"])


async def trigger(client: Client, args: argparse.Namespace) -> int:
    """apiary trigger: start a job; with --follow show its output and exit with its result."""
    from apiary.cli.client import q
    from apiary.cli.follow import Follower, whoami
    from apiary.queen.validate import parse_params

    # The API's field names (apiary.core.models.JobBody), checked there by apiary.core.jobrequest.
    body: JobBody = {"type": args.type, "parameters": parse_params(args.param),
                     # Who triggers is the token's user, as the queen knows it (job.triggered_by); the login is a hint.
                     "trigger": {"source": "API", "author": {"login": whoami()}}}
    if args.branch:
        body["branch"] = args.branch
    if args.commit:
        body["commit"] = args.commit
    job = await client.request("POST", f"/repos/{q(args.repo)}/jobs", body)
    say(f"{job['repo']} #{job['number']} {job['status']}: {client.page(job['id'])}")
    if not args.follow:
        return 0
    return await _follow(Follower(client, job, sys.stdout, sys.stderr))


async def rerun(client: Client, args: argparse.Namespace) -> int:
    """apiary rerun: a new job with the job's ref (the commit it ran), type and parameters; --follow as trigger."""
    from apiary.cli.client import q
    from apiary.cli.follow import Follower, whoami

    body: dict[str, Any] = {"trigger": {"source": "API", "author": {"login": whoami()}}}  # as trigger sends
    if getattr(args, "from_failed", False):
        body["from_failed"] = True  # its passed stages reused (apiary.core.partial)
    job = await client.request("POST", f"/jobs/{q(await job_id(client, args.job))}/rerun", body)
    say(f"{job['repo']} #{job['number']} {job['status']}: {client.page(job['id'])}")
    if not args.follow:
        return 0
    return await _follow(Follower(client, job, sys.stdout, sys.stderr))


async def logs(client: Client, args: argparse.Namespace) -> int:
    """apiary logs: a job's stored output; with --follow the rest live, and exit with its result."""
    from apiary.cli.follow import Follower

    job = await client.job(await job_id(client, args.job))
    follower = Follower(client, job, sys.stdout, sys.stderr)
    await follower.stored()
    if args.follow:
        return await _follow(follower)
    await follower.settle()  # the last attempt shown ended: the job's end, or a line saying it runs again
    job = await client.job(job["id"])
    if job["status"] in FINAL and not follower.renderer.result:
        await follower.ended()  # ended with no job:done (cancelled in the queue): say so
    elif job["status"] not in FINAL:
        print(f"apiary: job {job['id']} is {job['status']}; apiary logs --follow {job['id']} shows the rest",
              file=sys.stderr)
    await follower.summarize()  # an ended job that did not pass: what failed, as trigger --follow ends
    return 0


async def _follow(follower: Follower) -> int:
    try:
        return await follower.run()
    except asyncio.CancelledError:
        print(f"\napiary: stopped following; the job goes on (apiary cancel {follower.job_id} stops it)",
              file=sys.stderr)
        raise


async def ls(client: Client, args: argparse.Namespace) -> int:
    """apiary ls: recent jobs, of every repository or of one, as a table."""
    from apiary.cli.client import q
    from apiary.cli.follow import age, colour_on, paint, span, table
    from apiary.queen.estimate import said

    path = f"/repos/{q(args.repo)}/jobs" if args.repo else "/jobs"
    jobs = (await client.request("GET", f"{path}?limit={args.limit}"))["jobs"]
    if not jobs:
        say("no jobs yet" + (f" in {args.repo}" if args.repo else ""))
        return 0
    now = time.time()
    rows = []
    for job in jobs:
        ref = job.get("ref") or {}
        source = trigger_text(job)
        if job.get("duration") is not None:
            took = span(job["duration"])
        elif job.get("started") and job["status"] not in FINAL:
            took = span(now - job["started"])  # still running
        else:
            took = "-"
        rows.append([job["id"], f"{job['repo']}#{job['number']}", job["status"],
                     clipped(ref.get("branch") or ref.get("fetch") or (ref.get("id") or "-")[:12]), source or "-",
                     job.get("drone") or "-", took, age(job.get("created"), now),
                     said(job["status"], job.get("estimate"))])  # running and queued: apiary.queen.estimate
    colours = {"passed": "32", "failed": "31", "errored": "31", "cancelled": "33", "running": "36"}
    on = colour_on(sys.stdout)
    headers = ["ID", "JOB", "STATUS", "REF", "TRIGGER", "DRONE", "DURATION", "AGE", "EXPECTED"]
    if not any(row[-1] for row in rows):  # nothing running or queued with an estimate: no column for it
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    say(table(headers, rows,
              lambda col, value, cell: paint(cell, colours[value], on) if col == 2 and value in colours else cell))
    return 0


REF_WIDTH = 40  # characters of the REF column: a 1,000-character branch name would pad every row


def clipped(text: str, width: int = REF_WIDTH) -> str:
    """`text` in at most `width` characters: cut, with "…" at the end, when longer."""
    return text if len(text) <= width else text[:width - 1] + "…"


def trigger_text(job: dict[str, Any]) -> str:
    """What started a job, for apiary ls: how ("API", "UI", "rerun", "webhook github", "schedule 0 3 * * *")
    and who (the queen's triggered_by for a signed-in user; else the author the client gave, its name or login)."""
    cause, by = job.get("trigger") or {}, job.get("triggered_by") or {}
    kind, name = str(by.get("kind") or ""), str(by.get("name") or "")
    if isinstance(job.get("parent"), dict):  # a child job of a spread cell or a shard (apiary.core.spread)
        unit = str(job["parent"].get("unit") or "")
        return f"child of #{job['parent'].get('number')} {unit[:30] + '…' if len(unit) > 31 else unit}".strip()
    if kind in ("webhook", "schedule", "plugin", "chain"):
        return f"{kind} {name}".strip()
    author = cause.get("author") if isinstance(cause.get("author"), dict) else {}
    if kind == "bisect":  # "bisect #3 ada": who started the bisect
        return " ".join(str(x) for x in (kind, name, author.get("name") or author.get("login")) if x)
    how = "rerun" if kind == "rerun" or cause.get("type") == "rerun" else (cause.get("source") or {}).get("type")
    author = cause.get("author") if isinstance(cause.get("author"), dict) else {}
    who = name if kind in ("user", "token", "rerun") and name else (author.get("name") or author.get("login"))
    return " ".join(str(x) for x in (how, who) if x) or "-"


async def artifacts(client: Client, args: argparse.Namespace) -> int:
    """apiary artifacts: the job's artifacts as a table; with NAME, that one downloaded (-o PATH, - for stdout)."""
    from apiary.cli.client import q
    from apiary.cli.follow import table

    job = await job_id(client, args.job)
    found = (await client.request("GET", f"/jobs/{q(job)}/artifacts"))["artifacts"]
    if args.name is None:
        if not found:
            say(f"job {args.job} has no artifacts (a pipeline keeps some with artifacts: [PATTERN, …])")
            return 0
        say(table(["NAME", "SIZE"], [[a["name"], size_text(a["size"])] for a in found]))
        return 0
    one = next((a for a in found if a["name"] == args.name), None)
    if one is None:
        names = ", ".join(a["name"] for a in found[:10]) or "none"
        raise InputError(f"job {args.job} has no artifact {args.name!r} (it has: {names})", field="name")
    target = args.output or args.name.rsplit("/", 1)[-1]
    wrote = await client.download(f"/jobs/{q(job)}/artifacts/{q(args.name)}",
                                  None if target == "-" else Path(target))
    if target != "-":
        print(f"{args.name}: {size_text(wrote)} written to {target}", file=sys.stderr)
    return 0


def size_text(size: int) -> str:
    """A byte count for people: 812 B, 4.2 KiB, 31.0 MiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


async def cancel(client: Client, args: argparse.Namespace) -> int:
    """apiary cancel: stop a job."""
    from apiary.cli.client import q

    say((await client.request("POST", f"/jobs/{q(await job_id(client, args.job))}/cancel"))["status"])  # cancelled or cancelling
    return 0


async def drones(client: Client, args: argparse.Namespace) -> int:
    """apiary drones: the drones in the pool, as a table."""
    from apiary.cli.follow import age, table

    answer = await client.request("GET", "/drones")
    pool = answer["drones"]
    if args.endpoint:
        print(drone_endpoint(answer.get("endpoint"), client.url))
        return 0
    if not pool:
        say(f"no drones yet: run apiary drone --queen {drone_endpoint(answer.get('endpoint'), client.url)}")
        return 0
    now = time.time()
    rows = [[d["id"], d.get("host") or "-", str(d["capacity"]), str(d["running"]), f"{d['speed']:g}",
             str(d["version"]), f"{age(d.get('last_heartbeat'), now)} ago"] for d in pool]
    say(table(["ID", "HOST", "CAPACITY", "RUNNING", "SPEED", "VERSION", "HEARTBEAT"], rows))
    return 0


def drone_endpoint(bound: str | None, url: str) -> str:
    """Where a drone connects: the endpoint the queen bound, its host as the client reaches the queen when it
    is bound to every address (tcp://0.0.0.0:8421 seen from http://ci.example.com: tcp://ci.example.com:8421)."""
    host = urlsplit(url).hostname or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    if not bound:  # a queen older than the endpoint in GET /drones
        return f"tcp://{shown}:PORT (the drones line apiary up or apiary queen prints)"
    match = re.fullmatch(r"tcp://(.*):(\d+)", bound)
    if match and match.group(1) in ("0.0.0.0", "*", "[::]", "::"):
        return f"tcp://{shown}:{match.group(2)}"
    return bound


async def prune(client: Client, args: argparse.Namespace) -> int:
    """apiary prune: apply the repositories' retention policies now."""
    deleted = (await client.request("POST", "/prune"))["deleted"]
    for repo, count in sorted(deleted.items()):
        say(f"{repo}: {count} job{'s' if count != 1 else ''} deleted")
    if not deleted:
        say("no repositories")
    return 0
