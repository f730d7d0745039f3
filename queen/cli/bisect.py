"""apiary bisect: find the commit that broke a repository's pipeline, with jobs on the pool's drones
(apiary.queen.bisects runs it; this starts it, follows it and prints the answer).

    apiary bisect REPO --good SHA --bad SHA [--stage NAME] [--branch B] [--param N=V]   start one, follow it
    apiary bisect REPO --follow N       follow bisect #N;  --cancel N: cancel it;  --list: the last ones

Following prints each job's verdict as it comes and ends with the first bad commit (its message, author
and job) and the jobs it ran; a queen that restarts meanwhile is waited for (up to RECONNECT_FOR) as
`apiary trigger --follow` waits. Exit status (EXIT_CODES): 0 found, 1 a range (commits that could not be
built hide which one) or failed, 4 not reproduced (the bad commit did not fail as asked with the
bisect's settings), 130 cancelled (Ctrl-C stops following only: the bisect goes on, as said).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say
from apiary.cli.escapes import visible

if TYPE_CHECKING:
    from apiary.cli.client import Client

POLL = 1.0  # seconds between looks at a followed bisect
EXIT_CODES = {"found": 0, "range": 1, "failed": 1, "unreproduced": 4, "cancelled": 130}


def _count(n: Any, word: str) -> str:
    """``1 commit``, ``12 commits``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _number(value: str) -> int:
    """--follow and --cancel's N: a bisect's number (its page and --list show it)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 2**53:
        raise argparse.ArgumentTypeError(f"{value!r} is not a bisect number: a bisect number is 1 or more "
                                         "(apiary bisect REPO --list shows them)")
    return number


START_FLAGS = ("good", "bad", "stage", "branch", "param", "no_follow")  # what only starting a bisect takes


def _text(value: Any, limit: int = 200) -> str:
    """A string from the queen (a commit's subject, an author) as one safe line on a terminal."""
    return visible(str(value or ""), colours=False).replace("\n", " ")[:limit]


async def bisect(client: Client, args: argparse.Namespace) -> int:
    from apiary.cli.client import q

    repo = args.repo
    mode = "--list" if args.list else "--follow" if args.follow is not None else \
        "--cancel" if args.cancel is not None else None
    given = [f"--{name.replace('_', '-')}" for name in START_FLAGS if getattr(args, name)]
    if mode and given:
        from apiary.cli.client import ApiError

        raise ApiError(f"{mode} takes no {', '.join(given)}: those start a bisect (apiary bisect REPO --good SHA "
                       "--bad SHA ...)", 400)
    if args.list:
        found = await client.request("GET", f"/repos/{q(repo)}/bisects?limit=20")
        for b in found["bisects"]:
            first = (b.get("result") or {}).get("first_bad") or {}
            line = f"#{b['number']:<3} {b['status']:<12}  {b['good'][:10]}..{b['bad'][:10]}  " \
                   f"{_count(b['commits'], 'commit'):<13}  " \
                   f"{'stage ' + _text(b['stage'], 40) if b.get('stage') else 'the job':<16}"
            say((line + (f"  first bad: {first['commit'][:10]} {_text(first.get('subject'), 80)}" if first else ""))
                .rstrip())
        if not found["bisects"]:
            say(f"no bisects of {repo} yet")
        return 0
    if args.cancel is not None or args.follow is not None:
        number = args.cancel if args.cancel is not None else args.follow
        found = await client.request("GET", f"/repos/{q(repo)}/bisects?number={number}")
        if not found["bisects"]:
            from apiary.cli.client import ApiError

            raise ApiError(f"{repo} has no bisect #{number} (apiary bisect {repo} --list)", 404)
        doc = found["bisects"][0]
        if args.cancel is not None:
            done = await client.request("POST", f"/bisects/{q(doc['id'])}/cancel", {})
            say(f"bisect #{number} of {repo}: {done['status']}")
            return 0
        return await follow(client, doc)
    if not args.good or not args.bad:
        from apiary.cli.client import ApiError

        raise ApiError("give --good SHA and --bad SHA (or --follow N, --cancel N, --list)", 400)
    body: dict[str, Any] = {"good": args.good, "bad": args.bad}
    if args.stage:
        body["stage"] = args.stage
    if args.branch:
        body["branch"] = args.branch
    if args.param:
        from apiary.queen.validate import parse_params

        body["parameters"] = parse_params(args.param)
    doc = await client.request("POST", f"/repos/{q(repo)}/bisects", body)
    size = "reading the history" if doc.get("reading") else _count(doc["commits"], "commit")
    say(f"bisect #{doc['number']} of {repo}: {size} after {doc['good'][:10]} up to "
        f"{doc['bad'][:10]} on {doc['branch']}" + (f", bad when stage {doc['stage']} fails" if doc.get("stage") else ""))
    say(f"  {client.url}{doc['url']}")
    if args.no_follow:
        return 0
    return await follow(client, doc)


async def follow(client: Client, doc: dict[str, Any]) -> int:
    """Print the bisect's verdicts as they come, then its answer; the exit status (module docstring)."""
    from apiary.cli.client import q

    told: dict[int, str | None] = {}
    try:
        while True:
            doc = await _look(client, f"/bisects/{q(doc['id'])}")
            for t in sorted(doc.get("tries") or [], key=lambda t: (t.get("round") or 0, t["index"])):
                verdict = t.get("verdict")
                if t["index"] in told and told[t["index"]] == verdict:
                    continue
                if verdict is None and t["index"] in told:
                    continue
                told[t["index"]] = verdict
                job = f"#{t['number']}" if t.get("number") else "no job"
                what = verdict or "running"
                why = f" ({_text(t.get('reason'), 160)})" if verdict and t.get("reason") else ""
                say(f"  round {t.get('round')}: {t['commit'][:10]} {what:<9} {job}{why}  {_text(t.get('subject'), 72)}")
            if doc["status"] != "running":
                break
            await asyncio.sleep(POLL)
    except asyncio.CancelledError:
        say(f"stopped following; the bisect goes on (apiary bisect {doc['repo']} --follow {doc['number']}, "
            f"or --cancel {doc['number']})")
        raise
    return _answer(client, doc)


async def _look(client: Client, path: str) -> dict[str, Any]:
    """GET `path`, waiting for a queen that is away (restarting: refused, or 502-504 while it starts) up
    to RECONNECT_FOR seconds, as a followed job waits (apiary.cli.follow)."""
    from apiary.cli.client import ApiError, ClientError, Unreachable
    from apiary.cli.follow import MAX_RECONNECT_DELAY, RECONNECT_FOR

    delay, lost = 0.2, 0.0
    while True:
        try:
            found = await client.request("GET", path)
            if lost:
                say("  the queen answers again; following on")
            return found  # type: ignore[no-any-return]
        except Unreachable as exc:
            reason = exc.reason
        except ApiError as exc:
            if exc.status not in (502, 503, 504):
                raise
            reason = str(exc)
        if not lost:
            lost = time.monotonic()
            say(f"  lost the queen ({_text(reason, 200)}); waiting for it (the bisect goes on there)")
        if time.monotonic() - lost > RECONNECT_FOR:
            raise ClientError(f"lost the queen at {client.url} for {RECONNECT_FOR / 60:.0f} minutes: {reason}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_DELAY)


def _answer(client: Client, doc: dict[str, Any]) -> int:
    status = doc["status"]
    result = doc.get("result") or {}
    if status == "found":
        first = result["first_bad"]
        say(f"first bad commit: {first['commit']}")
        say(f"  {_text(first.get('subject'), 400)}")
        if first.get("author"):
            say(f"  author: {_text(first['author'])} <{_text(first.get('email'))}>")
        if first.get("job"):
            say(f"  job: {client.page(first['job'])}" + (f" (#{first['number']})" if first.get("number") else ""))
        if result.get("good_assumed"):
            say(f"  the commit before it, {str(result.get('last_good'))[:10]}, is the good one given: assumed good "
                "(as git bisect does), not run by this bisect")
    elif status == "range":
        say(f"the first bad commit is one of these {len(result.get('candidates') or [])} (the others between "
            "could not be built):")
        for c in result.get("candidates") or []:
            say(f"  {c['commit']} {_text(c.get('subject'), 100)}" + (f"  {client.page(c['job'])}" if c.get("job") else ""))
    elif status == "unreproduced":
        say(f"bisect #{doc['number']} {_text(doc.get('error'), 400)}: the bad commit did not fail as asked with "
            "this bisect's settings (its parameters, stage and branch), so no commit is blamed")
    elif status == "cancelled":
        who = (doc.get("cancelled_by") or {}).get("name")
        say(f"bisect #{doc['number']} was cancelled" + (f" by {_text(who, 100)}" if who else ""))
    else:
        say(f"bisect #{doc['number']} {status}: {_text(doc.get('error'), 400)}")
    tries = sorted(doc.get("tries") or [], key=lambda t: t["index"])
    if tries:
        say(f"jobs it ran ({len([t for t in tries if t.get('job')])}, in {_count(doc.get('rounds') or 0, 'round')}):")
        for t in tries:
            job = client.page(t["job"]) if t.get("job") else "no job"
            say(f"  {t['commit'][:10]} {t.get('verdict') or 'running':<9} {job}  {_text(t.get('subject'), 72)}")
    return EXIT_CODES.get(status, 1)


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser]) -> None:
    """`apiary bisect REPO --good SHA --bad SHA [--stage NAME] [--branch B]`, --follow/--cancel N, --list."""
    parser = command(sub, "bisect", "find the commit that broke the pipeline, with jobs on free drones", """
apiary bisect app --good 1a2b3c4 --bad 9f8e7d6            # follows it; exits 0 when found
apiary bisect app --good 1a2b3c4 --bad 9f8e7d6 --stage test --branch release
apiary bisect app --good 1a2b3c4 --bad 9f8e7d6 --param TARGET=arm64   # its jobs' parameters
apiary bisect app --list                                  # the last ones
apiary bisect app --follow 3                              # bisect #3 (--cancel 3 stops it)""", parents)
    parser.add_argument("repo", help="the repository's name")
    parser.add_argument("--good", metavar="SHA", help="a commit that passed (before the bad one)")
    parser.add_argument("--bad", metavar="SHA", help="a commit that fails")
    parser.add_argument("--stage", metavar="NAME", help="bad means this stage failed (default: the job failed)")
    parser.add_argument("--branch", metavar="B", help="the branch the commits are on, which the jobs build "
                                                       "(default: the repository's default branch)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of its jobs (repeatable; default: the pipeline's defaults)")
    parser.add_argument("--no-follow", action="store_true", help="start it and print its page; do not follow")
    which = parser.add_mutually_exclusive_group()  # one of them, or starting one (bisect() refuses a mix)
    which.add_argument("--follow", type=_number, metavar="N", help="follow bisect #N of REPO")
    which.add_argument("--cancel", type=_number, metavar="N", help="cancel bisect #N of REPO")
    which.add_argument("--list", action="store_true", help="REPO's last bisects")
