"""The store's repository secrets: one document per secret, sealed at rest; never copied into jobs or events."""

from __future__ import annotations

import logging
import time
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from apiary.queen.sealing import Sealer
from apiary.queen.trust import secret_kinds

log = logging.getLogger(__name__)


class SecretQueries:
    """Secrets: set, delete, names and kinds, values (unsealed only to be sent to a drone)."""

    secrets: AsyncCollection
    sealer: Sealer
    _secrets: dict[str, dict[str, tuple[str, tuple[str, ...]]]]

    async def set_secret(self, repo: str, name: str, value: str | None, kinds: list[str] | None) -> bool:
        """Set a secret's value and the kinds of job that get it (None: keep what it has, or the default);
        False when only kinds are given and there is no such secret."""
        self._secrets.pop(repo, None)
        changes: dict[str, Any] = {"updated": time.time()}
        if kinds is not None:
            changes["kinds"] = kinds
        if value is None:
            result = await self.secrets.update_one({"_id": f"{repo}:{name}"}, {"$set": changes})
            return result.matched_count == 1
        changes["value"] = self.sealer.seal(value)
        await self.secrets.update_one({"_id": f"{repo}:{name}"},
                                      {"$set": changes, "$setOnInsert": {"repo": repo, "name": name}}, upsert=True)
        return True

    async def delete_secret(self, repo: str, name: str) -> bool:
        self._secrets.pop(repo, None)
        return (await self.secrets.delete_one({"_id": f"{repo}:{name}"})).deleted_count == 1

    async def secret_names(self, repo: str) -> list[dict[str, Any]]:
        """The repository's secrets without their values: ``name``, ``kinds`` (of job that get it), ``updated``."""
        cursor = self.secrets.find({"repo": repo}, {"name": 1, "kinds": 1, "updated": 1, "_id": 0})
        return [{**doc, "kinds": list(secret_kinds(doc))} for doc in await cursor.sort("name", ASCENDING).to_list(None)]

    async def seal_secrets(self) -> None:
        """At start: seal values an older queen stored in clear; refuse a key that did not seal the others."""
        async for doc in self.secrets.find({}):
            if self.sealer.sealed(doc["value"]):
                self.sealer.open(doc["value"])  # ConfigError if the key is not the one used
                continue
            await self.secrets.update_one({"_id": doc["_id"]}, {"$set": {"value": self.sealer.seal(doc["value"])}})

    async def secret_values(self, repo: str) -> dict[str, str]:
        """NAME -> value; cached like repositories (every dispatch needs them)."""
        return {name: value for name, (value, _) in (await self._secret_cache(repo)).items()}

    async def secret_kinds(self, repo: str) -> list[dict[str, Any]]:
        """``{"name", "kinds"}`` of each secret (queen/trust.py decides with them), from the same cache."""
        return [{"name": name, "kinds": list(kinds)} for name, (_, kinds) in (await self._secret_cache(repo)).items()]

    async def _secret_cache(self, repo: str) -> dict[str, tuple[str, tuple[str, ...]]]:
        if repo not in self._secrets:
            self._secrets[repo] = {d["name"]: (self.sealer.open(d["value"]), secret_kinds(d))
                                   async for d in self.secrets.find({"repo": repo})}
        return self._secrets[repo]
