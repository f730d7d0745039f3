"""The store's people: users, sessions, API tokens and drones' join tokens.

A user::

    {"_id": username, "uid": their own id (apiary.queen.users.new_user_id: never reused, unlike the name),
     "key": the name NFKC-casefolded (users.name_key: no two users share it), "password": argon2id hash,
     "role": "admin" | "member", "created": seconds}
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from apiary.queen.users import name_key, new_user_id

log = logging.getLogger(__name__)


class PeopleQueries:
    """Users, sessions, API tokens, join tokens."""

    db: Any
    users: AsyncCollection
    sessions: AsyncCollection
    tokens: AsyncCollection

    async def count_users(self, role: str | None = None) -> int:
        return await self.users.count_documents({"role": role} if role else {})

    async def get_user(self, name: str) -> dict[str, Any] | None:
        return await self.users.find_one({"_id": name})

    async def user_like(self, name: str) -> dict[str, Any] | None:
        """The user whose name is `name` but for case and compatibility forms (users.name_key), if any."""
        return await self.users.find_one({"key": name_key(name)}, {"password": 0})

    async def insert_user(self, name: str, password_hash: str, role: str) -> bool:
        """Add a user with a new id; False if the name, or one differing only in case or form, is taken."""
        if await self.user_like(name) is not None:
            return False
        try:
            await self.users.insert_one({"_id": name, "uid": new_user_id(), "key": name_key(name),
                                         "password": password_hash, "role": role, "created": time.time()})
        except DuplicateKeyError:
            return False
        return True

    async def ensure_user_ids(self) -> None:
        """Give users made before ids (and name keys) theirs, and their comments the id of the user of the
        author's name (once: a comment with an author_id is not touched again)."""
        async for user in self.users.find({"$or": [{"uid": {"$exists": False}}, {"key": {"$exists": False}}]}):
            uid = user.get("uid") or new_user_id()
            await self.users.update_one({"_id": user["_id"]}, {"$set": {"uid": uid, "key": name_key(user["_id"])}})
            log.info("user %s: given the id %s", user["_id"], uid)
        async for user in self.users.find({}, {"uid": 1}):
            await self.db.comments.update_many({"author": user["_id"], "author_id": {"$exists": False}},
                                               {"$set": {"author_id": user["uid"]}})

    async def add_join_token(self, token_hash: str, drone_id: str | None, expires: float, by: str) -> None:
        await self.db.join_tokens.insert_one({"_id": token_hash, "id": drone_id, "expires": expires,
                                              "created": time.time(), "by": by})

    async def get_join_token(self, token_hash: str) -> dict[str, Any] | None:
        return await self.db.join_tokens.find_one({"_id": token_hash})

    async def use_join_token(self, token_hash: str) -> bool:
        """Delete the token; False when another request used it first."""
        return (await self.db.join_tokens.delete_one({"_id": token_hash})).deleted_count == 1

    async def make_admin(self, name: str, password_hash: str) -> None:
        """`name` becomes an admin with this password, made if new (the setup path: no admin exists)."""
        await self.users.update_one({"_id": name}, {"$set": {"password": password_hash, "role": "admin"},
                                                    "$setOnInsert": {"created": time.time(), "uid": new_user_id(),
                                                                     "key": name_key(name)}}, upsert=True)
        await self.sessions.delete_many({"user": name})

    async def list_users(self) -> list[dict[str, Any]]:
        return await self.users.find({}, {"password": 0}).sort("_id", ASCENDING).to_list(None)

    async def delete_user(self, name: str) -> bool:
        await self.sessions.delete_many({"user": name})
        await self.tokens.delete_many({"user": name})
        return (await self.users.delete_one({"_id": name})).deleted_count == 1

    async def create_session(self, session_id: str, user: str, csrf: str, expires: float) -> None:
        await self.sessions.insert_one({"_id": session_id, "user": user, "csrf": csrf, "expires": expires})

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.sessions.find_one({"_id": session_id, "expires": {"$gt": time.time()}})

    async def delete_session(self, session_id: str) -> None:
        await self.sessions.delete_one({"_id": session_id})

    async def create_token(self, token_id: str, user: str, secret_hash: str, name: str) -> None:
        await self.tokens.insert_one({"_id": token_id, "user": user, "hash": secret_hash, "name": name,
                                      "created": time.time()})

    async def get_token(self, token_id: str) -> dict[str, Any] | None:
        return await self.tokens.find_one({"_id": token_id})

    async def list_tokens(self, user: str) -> list[dict[str, Any]]:
        return await self.tokens.find({"user": user}, {"hash": 0}).sort("created", ASCENDING).to_list(None)

    async def delete_token(self, token_id: str, user: str) -> bool:
        return (await self.tokens.delete_one({"_id": token_id, "user": user})).deleted_count == 1
