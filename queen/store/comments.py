"""The store's comments on jobs (``comments``: ``_id`` a ULID string, so ``_id`` order is the order written).

One document per comment::

    {"_id": ULID, "job": job id, "author": user name or None (the owner of a queen without users),
     "author_id": the author's user id (store/people.py: who owns it, as names can be reused) or None,
     "text": markdown, "html": its rendering, "renderer": the renderer's version,
     "created": seconds since 1970, "edited": seconds since 1970 or None}

``comment_counts`` holds ``{"_id": job id, "n": its comments}``: the cap is taken with one conditional
update (`take_comment_slot`), so comments posted at once cannot pass it between a count and an insert.

Indexed on ``job`` alone: nx-27017 refuses inserts into a collection whose index includes _id, and a job
has at most apiary.queen.comment_rules.MAX_PER_JOB. Deleted with their job (store/jobs.py delete_jobs).
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

log = logging.getLogger(__name__)


class CommentQueries:
    """Comments: list a job's, add, edit, delete, count."""

    db: Any

    async def ensure_comment_indexes(self) -> None:
        await self.db.comments.create_index([("job", ASCENDING)])

    async def job_comments(self, job_id: str, limit: int, before: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """The job's newest `limit` comments (older than the comment `before`, when given), oldest first; and
        whether it has older ones still."""
        query: dict[str, Any] = {"job": job_id}
        if before is not None:
            query["_id"] = {"$lt": before}
        newest = await self.db.comments.find(query).sort("_id", DESCENDING).limit(limit + 1).to_list(None)
        return newest[:limit][::-1], len(newest) > limit

    async def get_comment(self, job_id: str, comment_id: str) -> dict[str, Any] | None:
        return await self.db.comments.find_one({"_id": comment_id, "job": job_id})

    async def count_comments(self, job_id: str) -> int:
        return await self.db.comments.count_documents({"job": job_id})

    async def count_comments_before(self, job_id: str, comment_id: str) -> int:
        """How many of the job's comments are older than the comment `comment_id`."""
        return await self.db.comments.count_documents({"job": job_id, "_id": {"$lt": comment_id}})

    async def take_comment_slot(self, job_id: str, most: int) -> bool:
        """Count one more comment on the job if it has fewer than `most`; False (nothing counted) if not.

        Atomic: the count goes up only by an update whose filter says it is below `most`. A job whose count
        was never kept (comments from before counts) starts from its comments as stored."""
        counts = self.db.comment_counts
        if await counts.find_one({"_id": job_id}) is None:
            try:
                await counts.insert_one({"_id": job_id, "n": await self.count_comments(job_id)})
            except DuplicateKeyError:
                pass  # another request started it meanwhile
        taken = await counts.update_one({"_id": job_id, "n": {"$lt": most}}, {"$inc": {"n": 1}})
        return taken.modified_count == 1

    async def give_comment_slot(self, job_id: str) -> None:
        """One comment fewer on the job (deleted, or its insert failed)."""
        await self.db.comment_counts.update_one({"_id": job_id, "n": {"$gt": 0}}, {"$inc": {"n": -1}})

    async def insert_comment(self, comment: dict[str, Any]) -> None:
        await self.db.comments.insert_one(comment)

    async def update_comment(self, job_id: str, comment_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Set `fields`; the comment as it is now, or None when it is gone."""
        return await self.db.comments.find_one_and_update({"_id": comment_id, "job": job_id}, {"$set": fields},
                                                          return_document=ReturnDocument.AFTER)

    async def delete_comment(self, job_id: str, comment_id: str) -> bool:
        return (await self.db.comments.delete_one({"_id": comment_id, "job": job_id})).deleted_count == 1

    async def delete_comments(self, job_ids: list[str]) -> None:
        await self.db.comments.delete_many({"job": {"$in": job_ids}})
        await self.db.comment_counts.delete_many({"_id": {"$in": job_ids}})
