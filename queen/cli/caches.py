"""apiary caches: a repository's pipeline caches (apiary.core.caches), listed or cleared."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from apiary.cli.console import say

if TYPE_CHECKING:
    from apiary.cli.client import Client


async def caches(client: Client, args: argparse.Namespace) -> int:
    """The caches of REPO as a table (most recently used first); with --clear, deleted (an admin's)."""
    from apiary.cli.client import q
    from apiary.cli.follow import table
    from apiary.cli.remote import size_text

    path = f"/repos/{q(args.repo)}/caches"
    if args.clear:
        query = "&".join(f"{name}={q(value)}" for name, value in (("scope", args.scope), ("key", args.key)) if value)
        deleted = (await client.request("DELETE", path + ("?" + query if query else "")))["deleted"]
        say(f"{args.repo}: {deleted} cache{'' if deleted == 1 else 's'} deleted")
        return 0
    listed: dict[str, Any] = await client.request("GET", path)
    rows = [c for c in listed["caches"] if (not args.scope or c["scope"] == args.scope)
            and (not args.key or c["key"] == args.key)]
    if not rows:
        say(f"{args.repo} has no caches{' that match' if args.scope or args.key else ''} (a pipeline keeps some "
            "with cache: [{key, paths}])")
        return 0
    now = time.time()
    say(table(["SCOPE", "KEY", "SIZE", "USED"],
              [[c["scope"], c["key"], size_text(int(c["size"] or 0)), _ago(now - float(c.get("used") or now))]
               for c in rows]))
    cap = listed.get("max_bytes") or 0
    say(f"{size_text(int(listed['size']))} in all" + (f", of {size_text(int(cap))} kept" if cap else ""))
    return 0


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"


def add_parser(sub: Any, command: Any, parents: list[argparse.ArgumentParser]) -> None:
    """`apiary caches REPO [--scope S] [--key K] [--clear]`."""
    cmd = command(sub, "caches", "a repository's pipeline caches: list them, or clear them (admins)", """
apiary caches app                       # scope, key, size, last use
apiary caches app --clear --scope main  # delete main's caches; without --scope/--key, all""", parents)
    cmd.add_argument("repo", help="the repository")
    cmd.add_argument("--scope", help="only this scope: a branch, or pull:REF")
    cmd.add_argument("--key", help="only the cache of this key")
    cmd.add_argument("--clear", action="store_true", help="delete them instead")
