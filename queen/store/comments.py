"""The store's comments on jobs (``comments``: ``_id`` a ULID string, so ``_id`` order is the order written).

One document per comment::

    {"_id": ULID, "job": job id, "author": user name or None (the owner of a queen without users),
     "text": markdown, "html": its rendering, "renderer": the renderer's version,
     "created": seconds since 1970, "edited": seconds since 1970 or None}

Indexed on ``job`` alone: nx-27017 refuses inserts into a collection whose index includes _id, and a job
has at most apiary.queen.comment_rules.MAX_PER_JOB. Deleted with their job (store/jobs.py delete_jobs).
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ASCENDING, ReturnDocument

log = logging.getLogger(__name__)


class CommentQueries:
    """Comments: list a job's, add, edit, delete, count."""

    db: Any

    async def ensure_comment_indexes(self) -> None:
        await self.db.comments.create_index([("job", ASCENDING)])

    async def job_comments(self, job_id: str) -> list[dict[str, Any]]:
        """The job's comments, oldest first."""
        return await self.db.comments.find({"job": job_id}).sort("_id", ASCENDING).to_list(None)

    async def get_comment(self, job_id: str, comment_id: str) -> dict[str, Any] | None:
        return await self.db.comments.find_one({"_id": comment_id, "job": job_id})

    async def count_comments(self, job_id: str) -> int:
        return await self.db.comments.count_documents({"job": job_id})

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
