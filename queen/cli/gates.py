"""apiary approve: decide on an approval gate of a waiting job (apiary.core.approvals)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say

if TYPE_CHECKING:
    from apiary.cli.client import Client


async def approve(client: Client, args: argparse.Namespace) -> int:
    """Approve (or with --reject, reject) stage STAGE of the waiting job JOB; say what the job does next."""
    from apiary.cli.client import q
    from apiary.cli.remote import job_id

    job = await job_id(client, args.job)
    body: dict[str, Any] = {"stage": args.stage, "decision": "reject" if args.reject else "approve"}
    if args.comment:
        body["comment"] = args.comment
    await client.request("POST", f"/jobs/{q(job)}/approvals", body)
    done = "rejected" if args.reject else "approved"
    then = "it failed" if args.reject else "it goes on (queued)"
    say(f"{done} stage {args.stage}: {then}: {client.page(job)}")
    return 0


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser], job_help: str) -> None:
    """`apiary approve JOB STAGE [--reject] [--comment TEXT]`."""
    gate = command(sub, "approve", "approve or reject a waiting job's approval gate", """
apiary approve app#7 deploy
apiary approve app#7 deploy --reject --comment "not on a Friday\"""", parents)
    gate.add_argument("job", help=job_help)
    gate.add_argument("stage", help="the stage the job waits at (apiary logs JOB says which)")
    gate.add_argument("--reject", action="store_true", help="reject it: the job fails, naming you")
    gate.add_argument("--comment", help="why, kept with the decision")
