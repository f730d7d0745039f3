"""The store's queries for bisects (apiary.queen.bisects): collection ``bisects`` (``_id`` = ULID string),
numbers per repository in ``bisect_numbers``. Functions over a Store rather than a mixin: the bisect's
document is the state of its search (apiary.core.bisect), and its module owns every query of it.

A bisect's document::

    {"_id", "repo", "number": n per repository, "branch", "good", "bad" (whole shas), "stage": name | None,
     "parameters": {name: value} its jobs are given (a from_job bisect: the failed job's own),
     "good_among": [shas] a from_job bisect picks good from while its history is read,
     "status": running | found | range | unreproduced (the bad end did not fail as asked) | failed | cancelled,
     "error": why it failed or was not reproduced | None,
     "created", "finished": seconds since 1970 | None, "by": who asked (apiary.core.context.TriggeredBy),
     "from_job": the failed job it was asked from | None, "cancelled_by": who cancelled it (as "by"; absent
     unless cancelled), "commits": [shas, oldest first, ending with bad],
     "size": how many commits, "reading": true while its history is being read (commits still []),
     "left_out": [{"stage", "why"}] the stages its jobs never run (apiary.core.bisect.left_out) at bad,
     "tries": [{"index", "commit", "job", "number", "round", "verdict": None | good | bad | skip (untestable) |
                unneeded (cancelled: its commit left the range) | cancelled (with the bisect), "unneeded": true
                when it was cancelled as unneeded (a good or bad then is its job's own end, not counted),
                "status": its job's end, "reason", "subject"}], "rounds": int, "result": {...} | None,
     "version": int (one more each write)}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument

from apiary.core.branchjobs import SPEAKS_FOR_BRANCH

if TYPE_CHECKING:
    from apiary.queen.store import Store

RUNNING = "running"


async def ensure_indexes(store: Store) -> None:
    await store.db.bisects.create_index([("repo", ASCENDING), ("number", DESCENDING)])
    await store.db.bisects.create_index([("status", ASCENDING)])


async def next_number(store: Store, repo: str) -> int:
    doc = await store.db.bisect_numbers.find_one_and_update({"_id": repo}, {"$inc": {"n": 1}}, upsert=True,
                                                            return_document=ReturnDocument.AFTER)
    return int(doc["n"])


async def insert(store: Store, doc: dict[str, Any]) -> None:
    await store.db.bisects.insert_one(doc)


async def get(store: Store, bisect_id: str, commits: bool = True) -> dict[str, Any] | None:
    """The bisect, with its line of commits only if `commits` (up to 10,000 shas)."""
    return await store.db.bisects.find_one({"_id": bisect_id}, None if commits else {"commits": 0})


async def count_running(store: Store, repo: str) -> int:
    return await store.db.bisects.count_documents({"repo": repo, "status": RUNNING})


async def running(store: Store) -> list[str]:
    """The ids of the bisects under way (a queen that starts takes them up again)."""
    return [d["_id"] async for d in store.db.bisects.find({"status": RUNNING}, {"_id": 1})]


async def of_repo(store: Store, repo: str, limit: int) -> list[dict[str, Any]]:
    cursor = store.db.bisects.find({"repo": repo}, {"commits": 0}, sort=[("number", DESCENDING)], limit=limit)
    return [d async for d in cursor]


async def save(store: Store, doc: dict[str, Any], fields: dict[str, Any]) -> bool:
    """Set `fields` on the bisect if it is still at `doc`'s version (compare-and-set), one version on;
    True if it was. `doc` takes the fields and the new version."""
    version = int(doc.get("version") or 0)
    done = await store.db.bisects.update_one({"_id": doc["_id"], "version": version},
                                             {"$set": {**fields, "version": version + 1}})
    if done.matched_count != 1:
        return False
    doc.update(fields)
    doc["version"] = version + 1
    return True


async def passed_commits(store: Store, repo: str, branch: str, limit: int = 50) -> list[str]:
    """The commits of `repo`'s `branch` its newest passed jobs ran (up to `limit`, newest job first, each
    once), of jobs that speak for the branch (apiary.core.branchjobs): not a bisect's own (its commit is one
    a bisect tried, not the branch's last good state), nor a child job (a passed cell of a failed run)."""
    query = {"repo": repo, "ref.branch": branch, "status": "passed", "ref.id": {"$exists": True},
             **SPEAKS_FOR_BRANCH}
    cursor = store.jobs.find(query, {"ref": 1}, sort=[("number", DESCENDING)], limit=limit * 4)
    out: list[str] = []
    async for job in cursor:
        sha = str(job["ref"].get("id") or "")
        if sha and sha not in out:
            out.append(sha)
        if len(out) >= limit:
            break
    return out


async def delete(store: Store, bisect_id: str) -> None:
    """A bisect refused before its history was read: as if never asked for."""
    await store.db.bisects.delete_one({"_id": bisect_id})
