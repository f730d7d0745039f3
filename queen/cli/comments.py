"""apiary comment / apiary comments: write on a job, and read what people wrote (apiary.queen.comments).

The text is markdown, sent as written (the queen checks it: 1 to 10,000 characters, no control characters
but tabs and newlines, so what `apiary comments` prints back cannot move a terminal's cursor).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say

if TYPE_CHECKING:
    from apiary.cli.client import Client


async def comment(client: Client, args: argparse.Namespace) -> int:
    """apiary comment JOB TEXT (- reads it from stdin); JOB --edit ID TEXT; JOB --delete ID."""
    from apiary.cli.client import q
    from apiary.cli.remote import job_id
    from apiary.core.errors import InputError

    job = await job_id(client, args.job)
    path = f"/jobs/{q(job)}/comments"
    if args.delete:
        if args.text is not None:
            raise InputError("--delete takes no text", field="text")
        await client.request("DELETE", f"{path}/{q(args.delete)}")
        say(f"deleted comment {args.delete}")
        return 0
    if args.edit:
        if args.text is not None:
            raise InputError("--edit ID TEXT takes the new text after the id, not before", field="text")
        args.text = args.edit[1]
    if args.text is None:
        raise InputError("the comment's text is missing: apiary comment JOB \"TEXT\" (or - to read it from stdin)",
                         field="text")
    text = sys.stdin.read(2**20) if args.text == "-" else args.text  # the queen takes 10,000 characters, says so
    if args.edit:
        said = await client.request("PATCH", f"{path}/{q(args.edit[0])}", {"text": text})
        say(f"edited comment {said['id']}: {client.page(job)}#comment-{said['id']}")
    else:
        said = await client.request("POST", path, {"text": text})
        say(f"comment {said['id']}: {client.page(job)}#comment-{said['id']}")
    return 0


async def comments(client: Client, args: argparse.Namespace) -> int:
    """apiary comments JOB: the job's comments, oldest first, as written (markdown)."""
    from apiary.cli.client import q
    from apiary.cli.follow import age
    from apiary.cli.remote import job_id

    job = await job_id(client, args.job)
    found: list[dict[str, Any]] = []
    before = ""
    while True:  # page by page, newest first, to the oldest (a job has at most 1,000)
        page = await client.request("GET", f"/jobs/{q(job)}/comments?limit=500{before}")
        found[:0] = page["comments"]
        if not page.get("older") or not page["comments"]:
            break
        before = f"&before={q(page['comments'][0]['id'])}"
    if args.json:
        import json

        print(json.dumps(found, indent=2))
        return 0
    if not found:
        say(f"no comments on {args.job} yet (apiary comment {args.job} \"TEXT\" writes one)")
        return 0
    now = time.time()
    for c in found:
        edited = f", edited {age(c['edited'], now)} ago" if c.get("edited") else ""
        say(f"{c['author']} · {age(c['created'], now)} ago{edited} · {c['id']}")
        say("\n".join(f"  {line}" for line in c["text"].splitlines()))
        say("")
    return 0


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser], job_help: str) -> None:
    """`apiary comment JOB TEXT [--edit ID | --delete ID]` and `apiary comments JOB [--json]`."""
    write = command(sub, "comment", "comment on a job (markdown), or edit or delete your comment", """
apiary comment app#7 "flaky: the network test timed out again"
git log -1 --format=%B | apiary comment app#7 -      # the text from stdin
apiary comment app#7 --edit 01JC0M3NT1D "the fix is in #8"
apiary comment app#7 --delete 01JC0M3NT1D""", parents)
    write.add_argument("job", help=job_help)
    write.add_argument("text", nargs="?", help="the comment, markdown (- reads it from stdin)")
    which = write.add_mutually_exclusive_group()
    which.add_argument("--edit", nargs=2, metavar=("ID", "TEXT"),
                       help="replace the text of your comment ID with TEXT (apiary comments shows the ids)")
    which.add_argument("--delete", metavar="ID", help="delete comment ID (yours; an admin: anyone's)")
    read = command(sub, "comments", "the comments on a job, oldest first", """
apiary comments app#7
apiary comments app#7 --json            # with each one's rendering (html)""", parents)
    read.add_argument("job", help=job_help)
    read.add_argument("--json", action="store_true", help="as the API gives them")
